"""Tracing: OpenTelemetry, set up from the standard ``OTEL_*`` variables, or off.

Tracing is on in a process only when the optional extra is installed
(``scheduler-core[otel]``: opentelemetry-api and -sdk) and the environment asks for it:
``OTEL_TRACES_EXPORTER`` names an exporter other than ``none``, or, with it unset,
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set; and
``OTEL_SDK_DISABLED`` is not ``true``. Everything else is the SDK's own reading of the
standard variables: the sampler (``OTEL_TRACES_SAMPLER``), the batch processor
(``OTEL_BSP_*``), the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``)
and each exporter's settings. Exporters are found by name in the
``opentelemetry_traces_exporter`` entry points, as the SDK's own auto-configuration
finds them: ``otlp`` (opentelemetry-exporter-otlp), ``console``, and ours,
``scheduler_jsonl`` (:mod:`runtime.tracing_sdk`: one JSON line per span, in a file
per process under ``OTEL_EXPORTER_JSONL_DIR``).

Off, the cost is the check of :data:`ENABLED` (a module attribute: read it as
``tracing.ENABLED``, not imported by name) where a span would start; this module
imports nothing of OpenTelemetry, so the job process still starts fast.

The helpers here know nothing of jobs: a W3C ``traceparent`` in and out, and
:func:`next_span_id`, which makes the next span started in this context take a given
id (a run's span takes one derived from its run's id, so a later run can link to it
knowing only that id).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "ENABLED",
    "attached",
    "configure",
    "context_of",
    "next_span_id",
    "span_id_override",
    "traceparent_of",
    "wanted",
]

ENABLED = False

# The id the next span started in this context takes (read by tracing_sdk's id
# generator); None: a random one.
span_id_override: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "span_id_override", default=None)


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` asks for tracing (the extra may still be missing)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return any(e.strip() not in ("", "none") for e in exporters.split(","))
    return bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure(service_name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Set up this process's tracer provider if ``environ`` (default ``os.environ``)
    asks for tracing; sets :data:`ENABLED`. Call once, at start.

    Returns None when tracing is on, or off because nothing asked for it; else why it
    is off though asked for (the extra is not installed, an exporter is unknown), for
    the caller to log: a process runs the same with tracing off.
    """
    global ENABLED
    env = os.environ if environ is None else environ
    if not wanted(env):
        return None
    try:
        from scheduler_core.runtime import tracing_sdk
    except ImportError as exc:
        return (f"OTEL_* variables ask for tracing but OpenTelemetry is not installed "
                f"(pip install 'scheduler-core[otel]'): {exc}")
    refusal = tracing_sdk.install(service_name, env, span_id_override)
    ENABLED = refusal is None
    return refusal


def context_of(traceparent: str | None) -> Any:
    """The OpenTelemetry context whose remote parent ``traceparent`` names (an empty
    context when it is None or malformed). Only with tracing on."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {} if traceparent is None else {"traceparent": traceparent}
    return TraceContextTextMapPropagator().extract(carrier)


def traceparent_of(span: Any = None) -> str | None:
    """The W3C ``traceparent`` of ``span`` (default: the current span); None when it
    is not a valid, recorded one. Only with tracing on."""
    from opentelemetry import trace

    if span is None:
        span = trace.get_current_span()
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


@contextlib.contextmanager
def attached(traceparent: str | None) -> Iterator[None]:
    """Make the span ``traceparent`` names the current one while the block runs
    (nothing when tracing is off or it is None)."""
    if not ENABLED or traceparent is None:
        yield
        return
    from opentelemetry import context

    token = context.attach(context_of(traceparent))
    try:
        yield
    finally:
        context.detach(token)


@contextlib.contextmanager
def next_span_id(span_id: int) -> Iterator[None]:
    """A span started inside the block takes ``span_id``: start exactly one there."""
    token = span_id_override.set(span_id)
    try:
        yield
    finally:
        span_id_override.reset(token)
