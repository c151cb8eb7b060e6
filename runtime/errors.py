"""The root exception of the runtime package.

    RuntimeCoreError
     ├─ ConfigError            an environment variable holds a value we cannot use
     ├─ DatabaseUnavailable    no connection to PostgreSQL could be made
     └─ SupervisorGaveUp       a supervisor exceeded its restart intensity (runtime.supervisor)
"""

from __future__ import annotations


class RuntimeCoreError(Exception):
    """Root of every error raised by ``runtime``."""


class ConfigError(RuntimeCoreError):
    """A configuration value is missing or malformed."""


class DatabaseUnavailable(RuntimeCoreError):
    """PostgreSQL could not be reached."""
