"""Job types and the registry that names them; knows nothing of trio or the runtime.

Importing ``handlers`` registers the built-ins (``handlers.builtin``) on ``REGISTRY``.
"""

from handlers import builtin as builtin
from handlers.registry import (
    REGISTRY,
    HandlerError,
    HandlerSpec,
    PayloadError,
    PermanentError,
    Registry,
    RunContext,
    UnknownHandler,
)

__all__ = [
    "REGISTRY",
    "HandlerError",
    "HandlerSpec",
    "PayloadError",
    "PermanentError",
    "Registry",
    "RunContext",
    "UnknownHandler",
    "builtin",
]
