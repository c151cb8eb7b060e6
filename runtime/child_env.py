"""What environment each child process gets: only what it needs, never a secret it
does not use.

- A job process (the warm pool's children, ``python -m scheduler_core.command.child``) gets
  :func:`job_env`: the ordinary variables of :data:`ORDINARY` (and ``LC_*``) plus the
  names the operator lists in ``SCHEDULER_JOB_ENV``. Any handler can read its own
  environment, so no token and no ``DATABASE_URL`` may be in it. The OpenTelemetry
  variables (``OTEL_*``, :func:`tracing_variable`) pass too, so a job process traces as
  its worker does, but not the exporter's headers (``OTEL_EXPORTER_OTLP_HEADERS`` and
  ``..._TRACES_HEADERS`` often hold a collector's token): those pass only when
  ``SCHEDULER_JOB_ENV`` names them (docs/security.md).
- A worker started by ``scheduler up`` gets :func:`worker_env`: the ordinary variables,
  the ``SCHEDULER_JOB_ENV`` names (to pass on), every setting but the secret ones of
  :data:`~runtime.config.SECRET_ENV`, its coordinator's URL and the one worker token
  it sends, and the ``OTEL_*`` variables (headers included: the worker exports its
  own spans). A worker never needs database credentials nor the admin or read tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from scheduler_core.runtime.config import SECRET_ENV, SETTINGS

# Variables a program expects to find and that hold no secret: where programs are, who
# and where the user is, the locale and time zone, the temporary folder, the terminal,
# how Python finds modules (a handler module may live on PYTHONPATH) and how TLS finds
# its certificate authorities (http_get to https).
ORDINARY = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "LANG", "LANGUAGE", "TZ",
    "TMPDIR", "PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE",
    "PYTHONIOENCODING", "PYTHONUTF8", "SSL_CERT_FILE", "SSL_CERT_DIR",
})
ORDINARY_PREFIXES = ("LC_",)

# Every setting a worker may read: all but the secrets (its own token is added apart).
_WORKER_SETTINGS = frozenset(s.env for s in SETTINGS) - SECRET_ENV


def _ordinary(name: str) -> bool:
    return name in ORDINARY or name.startswith(ORDINARY_PREFIXES)


def tracing_variable(name: str, *, headers: bool) -> bool:
    """Whether ``name`` is an OpenTelemetry setting (``OTEL_*``); those naming
    headers (which may hold a token) only with ``headers``."""
    return name.startswith("OTEL_") and (headers or not name.endswith("_HEADERS"))


def job_env(environ: Mapping[str, str], names: Iterable[str] = ()) -> dict[str, str]:
    """The environment of a job process: the ordinary variables of ``environ`` and
    those it has of ``names`` (SCHEDULER_JOB_ENV); secrets are never among them."""
    wanted = frozenset(names) - SECRET_ENV
    return {k: v for k, v in environ.items()
            if _ordinary(k) or k in wanted or tracing_variable(k, headers=False)}


def worker_env(environ: Mapping[str, str], *, coordinator_url: str, worker_token: str,
               job_env_names: Iterable[str] = ()) -> dict[str, str]:
    """The environment of a worker process started by ``scheduler up``: ordinary
    variables, the settings a worker reads (no secret among them), the job variables to
    pass on, ``COORDINATOR_URL`` and ``SCHEDULER_WORKER_TOKEN`` (the one it sends;
    left out when empty)."""
    wanted = (_WORKER_SETTINGS | frozenset(job_env_names)) - SECRET_ENV
    env = {k: v for k, v in environ.items()
           if _ordinary(k) or k in wanted or tracing_variable(k, headers=True)}
    env["COORDINATOR_URL"] = coordinator_url
    if worker_token:
        env["SCHEDULER_WORKER_TOKEN"] = worker_token
    return env
