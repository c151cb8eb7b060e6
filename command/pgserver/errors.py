"""The errors of the embedded PostgreSQL manager.

    DatabaseUnavailable          (runtime.errors)
     └─ EmbeddedPostgresError    it could not be initialised, started, reached or stopped
         └─ EmbeddedPostgresGone the postmaster of a running server is gone
"""

from __future__ import annotations

from scheduler_core.runtime.errors import DatabaseUnavailable

__all__ = ["EmbeddedPostgresError", "EmbeddedPostgresGone"]


class EmbeddedPostgresError(DatabaseUnavailable):
    """The embedded PostgreSQL could not be initialised, started, reached or stopped."""


class EmbeddedPostgresGone(EmbeddedPostgresError):
    """The postmaster of a server that was running is gone (killed, crashed, stopped)."""
