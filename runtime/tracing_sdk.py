"""The OpenTelemetry SDK's side of :mod:`runtime.tracing`: imported only when tracing is
asked for (importing it without the ``otel`` extra raises ImportError).

- :func:`install`: the tracer provider (resource, sampler and batch processor from the
  ``OTEL_*`` variables, our id generator) and its exporters, found by name in the
  ``opentelemetry_traces_exporter`` entry points.
- :class:`JsonLinesSpanExporter` (entry point ``scheduler_jsonl``): each ended span as
  one JSON line in ``$OTEL_EXPORTER_JSONL_DIR/<pid>.jsonl``, a file per process, so the
  coordinator, the workers and their job processes can share one folder without
  interleaving. For development and tests: nothing else reads the folder.
"""

from __future__ import annotations

import contextvars
import json
import os
import threading
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

__all__ = ["JSONL_DIR_ENV", "JsonLinesSpanExporter", "install"]

JSONL_DIR_ENV = "OTEL_EXPORTER_JSONL_DIR"
EXPORTER_GROUP = "opentelemetry_traces_exporter"


class _IdGenerator(RandomIdGenerator):
    """Random ids, but a span id set in ``override`` (``tracing.next_span_id``) wins."""

    def __init__(self, override: contextvars.ContextVar[int | None]) -> None:
        self._override = override

    def generate_span_id(self) -> int:
        wanted = self._override.get()
        return wanted if wanted is not None else super().generate_span_id()


def install(service_name: str, environ: Mapping[str, str],
            span_ids: contextvars.ContextVar[int | None]) -> str | None:
    """Build and register the tracer provider (its span ids overridable through
    ``span_ids``); None, or why tracing stays off."""
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    names = [n for n in names if n and n != "none"]
    found = {ep.name: ep for ep in entry_points(group=EXPORTER_GROUP)}
    exporters: list[SpanExporter] = []
    for name in names:
        if name not in found:
            return (f"OTEL_TRACES_EXPORTER names {name!r}, expected one of "
                    f"{sorted(found)} (otlp needs opentelemetry-exporter-otlp)")
        exporters.append(found[name].load()())
    attributes: dict[str, Any] = {}
    if not environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = service_name
    provider = TracerProvider(resource=Resource.create(attributes),
                              id_generator=_IdGenerator(span_ids))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return None


def _span_json(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
        "span_id": f"{ctx.span_id:016x}" if ctx else None,
        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
        "parent_trace_id": f"{parent.trace_id:032x}" if parent else None,
        "links": [{"trace_id": f"{link.context.trace_id:032x}",
                   "span_id": f"{link.context.span_id:016x}",
                   "attributes": dict(link.attributes or {})} for link in span.links],
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "start_time_ns": span.start_time,
        "end_time_ns": span.end_time,
        "service": span.resource.attributes.get("service.name"),
        "pid": os.getpid(),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends each span as a JSON line to ``$OTEL_EXPORTER_JSONL_DIR/<pid>.jsonl``."""

    def __init__(self, folder: str | None = None) -> None:
        folder = folder or os.environ.get(JSONL_DIR_ENV)
        if not folder:
            raise ValueError(f"the scheduler_jsonl exporter needs {JSONL_DIR_ENV}, "
                             "a folder to write to; found it unset")
        self._folder = folder
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(_span_json(s), default=str) + "\n" for s in spans)
        # The pid is read at each export: a forked process writes a file of its own.
        path = os.path.join(self._folder, f"{os.getpid()}.jsonl")
        with self._lock, open(path, "a", encoding="utf-8") as f:
            f.write(text)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
