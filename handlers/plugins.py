"""Job types from outside this project: entry points and named modules.

A package declares its handlers in the ``scheduler_core.handlers`` entry-point group::

    [project.entry-points."scheduler_core.handlers"]
    example = "scheduler_example_handlers:register"

Each entry point (and each ``--handlers`` / ``SCHEDULER_HANDLERS`` item) names either

- a callable, ``module:function``: it is called with the registry and registers its
  handlers on it (``registry.handler(...)``); or
- a module, ``package.module``: importing it is enough, its ``@REGISTRY.handler(...)``
  decorators register on ``handlers.REGISTRY``.

The coordinator loads them to validate submissions, each worker's job processes to run
them; both must see the same list (the same installed packages, the same
SCHEDULER_HANDLERS).

Errors: :class:`PluginError` (a :class:`~handlers.registry.HandlerError`) names the
entry point or module and what went wrong.
"""

from __future__ import annotations

import importlib
import types
import weakref
from collections.abc import Iterable
from importlib.metadata import entry_points

from scheduler_core.handlers.registry import HandlerError, Registry

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "load_plugins"]

ENTRY_POINT_GROUP = "scheduler_core.handlers"

# What each registry has loaded already: loading twice is a no-op, not a "handler
# registered twice" error.
_loaded: weakref.WeakKeyDictionary[Registry, set[str]] = weakref.WeakKeyDictionary()


class PluginError(HandlerError):
    """A plug-in module or entry point could not be loaded."""

    permanent = True


def load_plugins(registry: Registry, modules: Iterable[str] = (), *,
                 entry_points_group: str | None = ENTRY_POINT_GROUP) -> list[str]:
    """Load the entry points of ``entry_points_group`` (``None``: none), then
    ``modules`` (each ``module`` or ``module:callable``), in that order.

    Returns what was loaded by this call, as ``module`` or ``module:callable`` strings;
    anything this registry loaded before is skipped.

    Error handling: raises :class:`PluginError` naming the source (the entry point or
    the module) and the underlying error, e.g. an import error or a handler name that
    is already registered.
    """
    done = _loaded.setdefault(registry, set())
    sources: list[tuple[str, str]] = []
    if entry_points_group is not None:
        for ep in sorted(entry_points(group=entry_points_group), key=lambda e: e.name):
            sources.append((ep.value.strip(), f"entry point {ep.name!r} ({ep.value})"))
    for module in modules:
        module = module.strip()
        if module:
            sources.append((module, f"handler module {module!r}"))
    loaded = []
    for spec, described in sources:
        if spec in done:
            continue
        try:
            _load_one(registry, spec)
        except Exception as exc:
            raise PluginError(
                f"cannot load job types from {described}: {type(exc).__name__}: {exc}"
            ) from exc
        done.add(spec)
        loaded.append(spec)
    return loaded


def _load_one(registry: Registry, spec: str) -> None:
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ValueError(f"expected 'module' or 'module:callable', found {spec!r}")
    target: object = importlib.import_module(module_name)
    for part in filter(None, attr.split(".")):
        target = getattr(target, part)
    if isinstance(target, types.ModuleType):
        return  # importing it registered its handlers
    if not callable(target):
        raise TypeError(f"expected a module or a callable taking the registry, "
                        f"found {type(target).__name__} at {spec!r}")
    target(registry)
