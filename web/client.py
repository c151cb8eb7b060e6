"""A small synchronous HTTP client for the public API (the CLI uses it).

    ClientError
     ├─ Unreachable   the coordinator did not answer (connection refused, timeout)
     └─ ApiFailure    it answered with an error status; ``status`` and ``body`` kept
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


class ClientError(Exception):
    pass


class Unreachable(ClientError):
    pass


class ApiFailure(ClientError):
    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else str(body)
        field = body.get("field") if isinstance(body, dict) else None
        super().__init__(f"HTTP {status}: {message}" + (f" (field: {field})" if field else ""))
        self.status = status
        self.body = body


def _job_path(job_id: str, suffix: str = "") -> str:
    """``/api/jobs/<id><suffix>``, the id quoted so it cannot reach another route."""
    return f"/api/jobs/{quote(job_id, safe='')}{suffix}"


class Client:
    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the coordinator at {self.base_url}: {exc}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        if resp.status_code >= 400:
            raise ApiFailure(resp.status_code, body)
        return resp.status_code, body

    def submit(self, job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._call("POST", "/api/jobs", json=job)

    def get(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", _job_path(job_id))[1]  # type: ignore[no-any-return]

    def list(self, **params: Any) -> dict[str, Any]:
        params = {k: v for k, v in params.items() if v is not None}
        return self._call("GET", "/api/jobs", params=params)[1]  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", _job_path(job_id, "/cancel"))[1]  # type: ignore[no-any-return]

    def retry(self, job_id: str, reason: str | None = None) -> dict[str, Any]:
        return self._call("POST", _job_path(job_id, "/retry"),  # type: ignore[no-any-return]
                          json={"reason": reason})[1]

    def health(self) -> tuple[int, Any]:
        try:
            resp = self._http.get("/health")
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach the coordinator at {self.base_url}: {exc}") from exc
        return resp.status_code, resp.json()
