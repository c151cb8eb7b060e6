"""Whom the server runs as, and what that user must be able to reach.

PostgreSQL refuses to run as root, so run as root the server runs as the system user
``embedded_postgres`` (created if missing), or, for an existing data folder, as its
non-root owner; anyone else runs it as themselves. Only the execute (traverse) bit for
others is added to parent folders that lack it, and read (and execute) bits for others
to the binaries when pip installed them under a strict umask.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from scheduler_core.command.pgserver.binaries import pg_bin_dir
from scheduler_core.command.pgserver.errors import EmbeddedPostgresError

__all__ = [
    "SYSTEM_USER",
    "Identity",
    "blocked_parents",
    "identity",
    "prepare_dir",
]

_log = logging.getLogger(__name__)

SYSTEM_USER: Final = "embedded_postgres"  # the name embedded-postgres itself uses as root


@dataclass(frozen=True)
class Identity:
    """Whom the PostgreSQL processes run as. ``None`` fields: as this process."""

    uid: int | None
    gid: int | None

    @property
    def switches(self) -> bool:
        return self.uid is not None


def identity(data_dir: Path, system_user: str) -> Identity:
    """Whom to run the server on ``data_dir`` as; when it is another user, make sure that
    user can read the binaries."""
    ident = _resolve_identity(data_dir, system_user)
    if ident.switches:
        _ensure_pginstall_readable(ident)
    return ident


def _resolve_identity(data_dir: Path, system_user: str) -> Identity:
    """Root runs the server as ``system_user`` (or, for an existing data folder, as its
    non-root owner); anyone else runs it as themselves."""
    if os.geteuid() != 0:
        if data_dir.exists() and data_dir.stat().st_uid != os.geteuid():
            raise EmbeddedPostgresError(
                f"{data_dir} belongs to uid {data_dir.stat().st_uid}, not to"
                f" this user (uid {os.geteuid()})"
            )
        return Identity(None, None)
    if (data_dir / "PG_VERSION").is_file():
        owner = data_dir.stat()
        if owner.st_uid != 0:
            try:
                gid = pwd.getpwuid(owner.st_uid).pw_gid
            except KeyError:
                gid = owner.st_gid
            return Identity(owner.st_uid, gid)
    entry = _ensure_system_user(system_user)
    return Identity(entry.pw_uid, entry.pw_gid)


def prepare_dir(path: Path, ident: Identity) -> None:
    """Create ``path`` (mode 0700), owned by ``ident`` and reachable by it."""
    path.mkdir(parents=True, exist_ok=True)
    if ident.switches:
        assert ident.uid is not None and ident.gid is not None
        os.chown(path, ident.uid, ident.gid)
        _ensure_traversable(path, ident)
    path.chmod(0o700)


def blocked_parents(data_dir: Path, ident: Identity) -> list[Path]:
    """The parents of ``data_dir`` that ``ident`` cannot traverse (none when it is us)."""
    if not ident.switches:
        return []
    return [p for p in data_dir.parents if not _can_traverse(p.stat(), ident)]


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """Return the passwd entry of ``name``, creating a system user if it does not exist."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    useradd = shutil.which("useradd")
    if useradd is None:
        raise EmbeddedPostgresError(
            f"running as root: PostgreSQL needs a non-root user; create {name!r} (no useradd here)"
        )
    done = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    try:
        return pwd.getpwnam(name)  # also when a concurrent useradd won the race
    except KeyError:
        raise EmbeddedPostgresError(f"useradd {name} failed: {done.stderr.strip()}") from None


def _can_traverse(st: os.stat_result, ident: Identity) -> bool:
    if st.st_uid == ident.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == ident.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _ensure_traversable(path: Path, ident: Identity) -> None:
    """Let ``ident`` reach ``path``: add only o+x (search, not listing) to the parents
    that lack it. embedded-postgres itself adds g+rx,o+rx to every parent up to ``/``."""
    for parent in path.parents:
        st = parent.stat()
        if not _can_traverse(st, ident):
            mode = stat.S_IMODE(st.st_mode) | stat.S_IXOTH
            _log.warning("chmod %o %s so that the postgres user can reach %s", mode, parent, path)
            parent.chmod(mode)


_pginstall_checked = False


def _ensure_pginstall_readable(ident: Identity) -> None:
    """Root only: the service user must read the binaries, libraries and share files.
    Wheels install them 0755/0644, unless pip ran under a strict umask."""
    global _pginstall_checked
    if _pginstall_checked:
        return
    root = pg_bin_dir().parent
    _ensure_traversable(root, ident)
    for dirpath, _dirs, files in os.walk(root):
        for entry in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
            st = os.lstat(entry)
            if stat.S_ISLNK(st.st_mode):
                continue
            want = stat.S_IROTH
            if stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXUSR:
                want |= stat.S_IXOTH
            if st.st_mode & want != want:
                os.chmod(entry, stat.S_IMODE(st.st_mode) | want)
    _pginstall_checked = True
