"""A workflow's graph as the API takes it: the steps' names and ``dependsOn`` checked, and
an order with every parent first. ``POST /api/workflows`` and a scheduled workflow
(``POST /api/jobs`` with ``cron`` and ``workflow``) both validate through here, so the
two answer the same input with the same 400 (naming ``steps.<name>...``; the scheduled
one prefixes ``workflow.``).
"""

from __future__ import annotations

import re

from scheduler_core.schema import wire
from scheduler_core.web.errors import ApiError


def edges_of(body: wire.SubmitWorkflow) -> dict[str, list[tuple[str, str]]]:
    """Each step's parents as (step, policy), checked to name steps of the workflow."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name, step in body.steps.items():
        if len(name) > 100 or not re.fullmatch(wire.REF_PATTERN, name):
            raise ApiError(400, "validation_error",
                           "a step's name is an identifier (letters, digits, _; not starting "
                           f"with a digit; at most 100), found {name[:100]!r}", "steps")
        where = f"steps.{name}"
        for field, value in (("cron", step.cron), ("ref", step.ref)):
            if value is not None:
                raise ApiError(400, "validation_error",
                               f"a workflow's step takes no {field}", f"{where}.{field}")
        if step.depends_on is None and step.on_parent_failure is not None:
            raise ApiError(400, "validation_error",
                           "onParentFailure applies only with dependsOn",
                           f"{where}.onParentFailure")
        default = step.on_parent_failure or "cancel"
        parents: list[tuple[str, str]] = []
        for pos, entry in enumerate(step.depends_on or ()):
            field = f"{where}.dependsOn[{pos}]"
            policy = default
            if isinstance(entry, wire.Dependency):
                policy = entry.on_parent_failure or default
                entry, field = entry.job, field + ".job"
            if not isinstance(entry, str) or entry not in body.steps:
                raise ApiError(400, "validation_error",
                               "a step depends on steps of its workflow, by name; found "
                               f"{str(entry)[:100]!r}, which is none of them", field)
            if entry == name:
                raise ApiError(400, "validation_error",
                               f"step {name!r} cannot depend on itself", field)
            parents.append((entry, policy))
        out[name] = parents
    return out


def order_of(edges: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The steps with every parent before its children (Kahn's algorithm, ties in the
    order given); a cycle is a 400 naming one of its steps."""
    children: dict[str, list[str]] = {name: [] for name in edges}
    missing = {name: len(ps) for name, ps in edges.items()}
    for name, ps in edges.items():
        for parent, _ in ps:
            children[parent].append(name)
    ready = [name for name, n in missing.items() if n == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for child in children[name]:
            missing[child] -= 1
            if missing[child] == 0:
                ready.append(child)
    if len(order) < len(edges):
        stuck = sorted(name for name, n in missing.items() if n > 0)
        raise ApiError(400, "validation_error",
                       "the steps' dependsOn form a cycle through "
                       + ", ".join(stuck[:10]) + ("..." if len(stuck) > 10 else ""),
                       f"steps.{stuck[0]}.dependsOn")
    return order
