"""A real ``scheduler up`` for the security tests: its every output line kept, its
JSON log lines parsed, its children found by name."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

from tests.support import Proc, free_port, wait_until


def secret_settings(dsn: str) -> dict[str, str]:
    """Fresh admin, read, worker and client tokens, and a DATABASE_URL for ``dsn`` in
    URL form with a password in it (the test server trusts loopback, so any password
    connects)."""
    parts = conninfo_to_dict(dsn)
    password = f"pw-{secrets.token_hex(12)}"
    host = str(parts.get("host", "127.0.0.1"))
    url = (f"postgresql://{quote(str(parts.get('user', 'postgres')))}:{password}@"
           f"{quote(host, safe='')}:{parts.get('port', 5432)}/{quote(str(parts['dbname']))}")
    return {"SCHEDULER_ADMIN_TOKEN": f"admin-{secrets.token_urlsafe(24)}",
            "SCHEDULER_READ_TOKEN": f"read-{secrets.token_urlsafe(24)}",
            "SCHEDULER_WORKER_TOKEN": f"worker-{secrets.token_urlsafe(24)}",
            "SCHEDULER_TOKEN": f"client-{secrets.token_urlsafe(24)}",
            "DATABASE_URL": url, "_password": password}


class Up(Proc):
    """``scheduler up`` on a free port (or ``port``) with JSON logs."""

    def __init__(self, data_dir: Path, env: Mapping[str, str], *, port: int | None = None,
                 workers: int = 1) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(["up", "--port", str(self.port), "--workers", str(workers)],
                         {"SCHEDULER_LOG_FORMAT": "json", "SCHEDULER_DB_POOL_SIZE": "4",
                          "SCHEDULER_DATA_DIR": str(data_dir),
                          "SCHEDULER_WORKER_DATA_DIR": str(data_dir / "worker-data"),
                          "SCHEDULER_DRAIN_TIMEOUT_SECONDS": "2",
                          **{k: v for k, v in env.items() if not k.startswith("_")}}, "up")

    def output(self) -> str:
        """Everything it wrote so far (also once stopped)."""
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:  # a line cut short while being written
                    continue
        return found

    def started(self, name: str) -> list[int]:
        """The pids ``up`` started as ``name`` (coordinator, worker-1...), in order."""
        return [e["pid"] for e in self.events()
                if e.get("event") == "process_started" and e.get("process_name") == name]

    def wait_up(self, timeout: float = 60.0) -> None:
        def up() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"up exited {self.popen.returncode}:\n"
                                     + self.output()[-3000:])
            return "scheduler-core is up" in self.output()
        wait_until(up, timeout=timeout, what="scheduler up to be up")
