"""Job types and the registry that names them; knows nothing of trio or the runtime.

Importing ``handlers`` registers the built-ins (``handlers.builtin``) on ``REGISTRY``;
:func:`load_plugins` adds the job types of other packages (``handlers.plugins``).
"""

from scheduler_core.handlers import builtin as builtin
from scheduler_core.handlers.plugins import ENTRY_POINT_GROUP, PluginError, load_plugins
from scheduler_core.handlers.registry import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE,
    DEFAULT_TIMEOUT_SECONDS,
    REGISTRY,
    HandlerError,
    HandlerSpec,
    PayloadError,
    PermanentError,
    RateLimited,
    Registry,
    RunContext,
    RunReporter,
    Snooze,
    UnknownHandler,
)

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_QUEUE",
    "DEFAULT_TIMEOUT_SECONDS",
    "ENTRY_POINT_GROUP",
    "REGISTRY",
    "HandlerError",
    "HandlerSpec",
    "PayloadError",
    "PermanentError",
    "PluginError",
    "RateLimited",
    "Registry",
    "RunContext",
    "RunReporter",
    "Snooze",
    "UnknownHandler",
    "builtin",
    "load_plugins",
]
