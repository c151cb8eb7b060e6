"""The one error of the embedded PostgreSQL manager.

    DatabaseUnavailable          (runtime.errors)
     └─ EmbeddedPostgresError    it could not be initialised, started, reached or stopped
"""

from __future__ import annotations

from scheduler_core.runtime.errors import DatabaseUnavailable

__all__ = ["EmbeddedPostgresError"]


class EmbeddedPostgresError(DatabaseUnavailable):
    """The embedded PostgreSQL could not be initialised, started, reached or stopped."""
