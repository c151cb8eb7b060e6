"""The msgspec Structs that cross the wire: API bodies and the worker protocol.

JSON field names are camelCase (``rename="camel"``); inbound structs forbid unknown
fields so a typo is a 400 naming the field, not a silently ignored option.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta


class JobStatus(enum.StrEnum):
    """A job's status, as the ``jobs.status`` column and the API spell it.

    Each member is its string (``JobStatus.PENDING == "Pending"``), so rows and JSON
    compare with it as they are. The sets below are the only lists of statuses in
    Python; the .sql files spell theirs out (a partial index's predicate must be a
    literal) and tests/unit/test_status_sets.py checks every one against these.
    """

    WAITING = "Waiting"  # for its parents (dependsOn): not the WAITING set below
    SCHEDULED = "Scheduled"
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    DEAD_LETTER = "DeadLetter"
    CANCELLED = "Cancelled"


_S = JobStatus
JOB_STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)  # every status, in display order
# Finished for good: nothing more happens to the job unless someone retries it.
TERMINAL: frozenset[JobStatus] = frozenset({_S.SUCCEEDED, _S.DEAD_LETTER, _S.CANCELLED})
# Not finished: in flight or awaiting a run or a retry (counted exactly on the dashboard;
# what a cancel applies to; what counts as a schedule's overlapping run).
ACTIVE: tuple[JobStatus, ...] = (_S.WAITING, _S.SCHEDULED, _S.PENDING, _S.RUNNING, _S.FAILED)
# ACTIVE before migration 0013 added Waiting (the literals of the older migrations).
ACTIVE_BEFORE_WAITING: tuple[JobStatus, ...] = (_S.SCHEDULED, _S.PENDING, _S.RUNNING,
                                                _S.FAILED)
# Awaiting a run, now or later: a queue's waiting count, the claim index. (Not
# Waiting: a job waiting for its parents is in no claim index.)
WAITING: tuple[JobStatus, ...] = (_S.PENDING, _S.SCHEDULED, _S.FAILED)
# Due at ``run_at``: promoted to Pending when it comes.
DUE_LATER: tuple[JobStatus, ...] = (_S.SCHEDULED, _S.FAILED)
# Not started yet: what a debounce (``unique.onConflict`` "replace") may still change.
NOT_STARTED: tuple[JobStatus, ...] = (_S.WAITING, _S.SCHEDULED, _S.PENDING)
# What ``POST /api/jobs/{id}/retry`` applies to.
RETRYABLE: tuple[JobStatus, ...] = (_S.DEAD_LETTER, _S.CANCELLED, _S.FAILED)

# RateLimited: the handler was told to slow down (RateLimited / ctx.backoff): the job
# waits again without spending the attempt and its bucket is held for retryAfter.
# Snoozed: the handler returned or raised Snooze: the job runs again after
# snoozeSeconds without spending the attempt (its snoozes counted, capped).
RunOutcome = Literal["Succeeded", "Failed", "TimedOut", "Cancelled", "Released",
                     "RateLimited", "Snoozed"]

# A queue name: the one rule, for the API's bodies and paths, the CLI and the OpenAPI.
# ("(?!\n)": msgspec searches the pattern, and a bare "$" also matches before a final
# newline, which would let a body's queue "a\n" through; in ECMA regex it changes nothing.)
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$(?!\n)"
QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)
QueueName = Annotated[str, Meta(pattern=QUEUE_NAME_PATTERN,
                                description="letters, digits, _ . - ; 1 to 64 characters")]
# What a worker asks to claim from: a queue name, or * for every queue (including ones
# created after it started).
QUEUE_SELECTOR_PATTERN = r"^(\*|[A-Za-z0-9_.\-]{1,64})$(?!\n)"
QueueSelector = Annotated[str, Meta(pattern=QUEUE_SELECTOR_PATTERN,
                                    description="a queue name, or * for every queue")]
IdempotencyKey = Annotated[str, Meta(min_length=1, max_length=200)]
# A job's flow-control key (a tenant, a customer): its queue's per-key limits and the
# fair share between keys apply to it (docs/decisions/0020-keys-and-fairness.md).
ConcurrencyKey = Annotated[str, Meta(min_length=1, max_length=200)]
MaxAttempts = Annotated[int, Meta(ge=1, le=100)]
TimeoutSeconds = Annotated[int, Meta(ge=1, le=86400)]
Priority = Annotated[int, Meta(ge=-100, le=100)]
Take = Annotated[int, Meta(ge=1, le=500)]

_IN = {"rename": "camel", "forbid_unknown_fields": True, "kw_only": True}
_OUT = {"rename": "camel", "kw_only": True}


MAX_PARENTS = 10_000
MAX_DEPTH = 1000
# A batch item's name for the items after it (dependsOn), never a job id's shape.
REF_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
ParentFailurePolicy = Literal["cancel", "run", "wait"]


class Dependency(msgspec.Struct, **_IN):
    """A parent with its own failure policy: ``{"job": id | index | ref,
    "onParentFailure": "run"}``."""

    job: str | int
    on_parent_failure: ParentFailurePolicy | None = None


DependencyRef = str | int | Dependency


MAX_TAGS = 20
Tags = Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]],
                 Meta(min_length=1, max_length=MAX_TAGS)]


class SubmitJob(msgspec.Struct, **_IN):
    """``POST /api/jobs``. With ``cron`` it defines a schedule instead of one job; with
    ``cron`` and ``workflow`` (and no ``type``) a schedule that fires that workflow.

    ``type`` is required for every job: it is optional here only so that the scheduled
    workflow's body decodes; the routes answer its absence as a missing field."""

    type: Annotated[str, Meta(min_length=1, max_length=100)] | None = None
    payload: dict[str, Any] | None = None
    run_at: str | None = None
    max_attempts: MaxAttempts | None = None
    timeout_seconds: TimeoutSeconds | None = None
    idempotency_key: IdempotencyKey | None = None
    cron: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    timezone: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    queue: QueueName | None = None
    priority: Priority | None = None
    misfire_policy: Literal["skip", "once", "all"] | None = None
    overlap_policy: Literal["allow", "skip", "queue"] | None = None
    concurrency_key: ConcurrencyKey | None = None
    # Jobs this one waits for (docs/decisions/0021-dependencies.md): job ids, or in a
    # batch an earlier item's index or ``ref``; each either bare or with its own
    # ``onParentFailure``.
    depends_on: Annotated[list[DependencyRef], Meta(min_length=1,
                                                    max_length=MAX_PARENTS)] | None = None
    on_parent_failure: ParentFailurePolicy | None = None
    ref: Annotated[str, Meta(pattern=REF_PATTERN, max_length=100)] | None = None
    # With cron: the workflow each fire creates, as POST /api/workflows takes it.
    workflow: SubmitWorkflow | None = None
    # At most one job per key among jobs in some statuses (docs/decisions/0024).
    unique: Unique | None = None
    # Labels to search by (GET /api/jobs?tag=...): 1..20 strings of 1..64 characters.
    tags: Tags | None = None


MAX_BATCH_JOBS = 1000


class BatchCallbacks(msgspec.Struct, **_IN):
    """Jobs a batch runs once its last member has ended: ``onFinish`` whatever the
    members' outcomes, ``onSuccess`` only if every one Succeeded, ``onFailure`` only if
    one did not. Each sees the members in ``ctx.parent_ids`` / ``ctx.parent_counts``."""

    on_finish: SubmitJob | None = None
    on_success: SubmitJob | None = None
    on_failure: SubmitJob | None = None


class SubmitBatch(msgspec.Struct, **_IN):
    """``POST /api/jobs/batch``: up to 1000 jobs, each as ``POST /api/jobs`` takes it
    (without ``cron``); all are written or none. ``batch``: its callbacks."""

    jobs: Annotated[list[SubmitJob], Meta(min_length=1, max_length=MAX_BATCH_JOBS)]
    batch: BatchCallbacks | None = None


class RetryJob(msgspec.Struct, **_IN):
    reason: Annotated[str, Meta(max_length=1000)] | None = None


class RunOut(msgspec.Struct, **_OUT):
    id: uuid.UUID
    attempt: int
    worker_id: str
    started_at: dt.datetime
    lease_expires_at: dt.datetime
    finished_at: dt.datetime | None
    outcome: str | None
    error: str | None


WaitingReasonName = Literal["scheduled", "queue_paused", "queue_concurrency", "queue_rate",
                            "key_concurrency", "key_rate", "retry_backoff", "depends_on",
                            "no_worker", "ready", "validating"]


class WaitingReason(msgspec.Struct, omit_defaults=True, **_OUT):
    """Why a waiting job has not started: the first that holds of, in order,
    ``scheduled`` / ``retry_backoff`` (until ``until``), ``queue_paused``,
    ``queue_concurrency`` / ``key_concurrency`` (``running`` of ``limit``),
    ``queue_rate`` / ``key_rate`` (until ``until``), ``no_worker`` (no live worker
    takes jobs from its queue); ``ready``: nothing holds it, the next claim may take it;
    ``validating``: enqueued through SQL, its type and payload not yet checked (a
    coordinator does so once its transaction has committed)."""

    reason: WaitingReasonName
    until: dt.datetime | None = None
    running: int | None = None
    limit: int | None = None
    parents: list[uuid.UUID] | None = None  # depends_on: the parents not done (first 100)


class JobOut(msgspec.Struct, omit_defaults=True, **_OUT):
    id: uuid.UUID
    type: str
    payload: Any
    status: str
    queue: str
    priority: int
    run_at: dt.datetime
    attempts: int
    max_attempts: int
    timeout_seconds: int
    idempotency_key: str | None
    schedule_id: uuid.UUID | None
    fire_time: dt.datetime | None
    cancel_requested: bool
    last_error: str | None
    result: Any
    retry_reason: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    concurrency_key: str | None = None
    tags: list[str] | None = None
    waiting: WaitingReason | None = None  # only when the job is waiting (one job's GET)
    runs: list[RunOut] | None = None
    # One job's GET: the jobs it depends on and those that depend on it (first 1,000).
    depends_on: list[uuid.UUID] | None = None
    dependents: list[uuid.UUID] | None = None
    # What its latest run reported (ctx.progress, ctx.set_meta); how often it snoozed.
    progress: float | None = None
    progress_message: str | None = None
    meta: dict[str, Any] | None = None
    snoozes: int = 0


class SubmittedJob(JobOut, omit_defaults=True, rename="camel", kw_only=True):
    """One item of a batch submission's answer: the job, and whether this request
    created it (False: its idempotency key named a job that already existed)."""

    created: bool


class SubmittedBatch(msgspec.Struct, omit_defaults=True, **_OUT):
    items: list[SubmittedJob]
    callbacks: dict[str, SubmittedJob] | None = None  # "onFinish" -> its job


class JobPage(msgspec.Struct, **_OUT):
    items: list[JobOut]
    next_cursor: str | None


MAX_WORKFLOW_STEPS = 10_000
WorkflowStatus = Literal["Running", "Succeeded", "Failed"]


class SubmitWorkflow(msgspec.Struct, **_IN):
    """``POST /api/workflows``: named steps, each a job as ``POST /api/jobs`` takes it
    (without ``cron`` and ``ref``), whose ``dependsOn`` names other steps."""

    name: Annotated[str, Meta(min_length=1, max_length=200)]
    # (Step names are checked against REF_PATTERN by the route, so the 400 names them.)
    steps: Annotated[dict[str, SubmitJob], Meta(min_length=1, max_length=MAX_WORKFLOW_STEPS)]


class WorkflowCreated(msgspec.Struct, **_OUT):
    id: uuid.UUID
    name: str
    steps: dict[str, uuid.UUID]  # step -> its job's id


class WorkflowStepOut(msgspec.Struct, omit_defaults=True, **_OUT):
    name: str
    job_id: uuid.UUID
    type: str
    status: str
    attempts: int
    depends_on: list[str]
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    result: Any = None
    last_error: str | None = None


class WorkflowOut(msgspec.Struct, omit_defaults=True, **_OUT):
    """A workflow: ``Running`` while a step is in an active status (Waiting included),
    ``Succeeded`` when every step did, else ``Failed`` with ``failedSteps`` (those that
    ended DeadLetter, or were Cancelled other than by a failed parent)."""

    id: uuid.UUID
    name: str
    status: WorkflowStatus
    created_at: dt.datetime
    counts: dict[str, int]  # steps by status
    failed_steps: list[str]
    finished_at: dt.datetime | None = None
    # A schedule's fire: the schedule and the fire time (migration 0015).
    schedule_id: uuid.UUID | None = None
    fire_time: dt.datetime | None = None
    steps: list[WorkflowStepOut] | None = None  # one workflow's GET


class WorkflowPage(msgspec.Struct, **_OUT):
    items: list[WorkflowOut]
    next_cursor: str | None


class ScheduledStepOut(msgspec.Struct, **_OUT):
    name: str
    type: str
    depends_on: list[str]  # step names


class ScheduledWorkflowOut(msgspec.Struct, **_OUT):
    """What a workflow schedule fires: the workflow's name and its steps, parents
    first."""

    name: str
    steps: list[ScheduledStepOut]


class ScheduleOut(msgspec.Struct, **_OUT):
    """A schedule. For a workflow schedule ``workflow`` is set, ``type`` is
    ``workflow:`` and its name, and the job fields (payload, queue, priority, attempts,
    timeout) are unused: each step carries its own."""

    id: uuid.UUID
    idempotency_key: str | None
    cron: str
    timezone: str
    type: str
    payload: Any
    queue: str
    priority: int
    max_attempts: int
    timeout_seconds: int
    misfire_policy: str
    overlap_policy: str
    enabled: bool
    next_fire_at: dt.datetime | None
    last_fired_at: dt.datetime | None
    created_at: dt.datetime
    workflow: ScheduledWorkflowOut | None = None
    kind: Literal["schedule"] = "schedule"


class ErrorBody(msgspec.Struct, **_OUT):
    """Every 4xx/5xx: ``error`` is a stable code, ``field`` names the culprit input."""

    error: str
    message: str
    field: str | None = None


# --- the worker protocol -------------------------------------------------------------

class RegisterWorker(msgspec.Struct, **_IN):
    worker_id: Annotated[str, Meta(min_length=1, max_length=200)]
    hostname: Annotated[str, Meta(max_length=255)]
    pid: Annotated[int, Meta(ge=0, le=2**31 - 1)]  # the workers.pid column is an integer
    capacity: Annotated[int, Meta(ge=1, le=10000)]
    # What it claims from (shown per queue: a queue with waiting jobs and no live worker
    # taking from it is flagged no_worker); an older worker sends none.
    queues: Annotated[list[QueueSelector], Meta(max_length=1000)] | None = None


class RegisteredWorker(msgspec.Struct, **_OUT):
    """``worker_secret``: what the worker's later requests send as X-Worker-Secret
    (web/worker_api.py); empty from a coordinator that has none to give."""

    worker_id: str
    lease_seconds: float
    heartbeat_seconds: float
    worker_secret: str = ""


class RunReport(msgspec.Struct, omit_defaults=True, **_IN):
    """What a running job said of itself since the worker last sent it: its newest
    ``progress`` (0..1) with its ``message`` (None: none), and its ``meta`` (an
    object of at most 16 KiB, checked by the coordinator); a field left out did not
    change."""

    progress: Annotated[float, Meta(ge=0, le=1)] | None = None
    message: Annotated[str, Meta(max_length=1000)] | None = None
    meta: dict[str, Any] | None = None


class RunRef(msgspec.Struct, omit_defaults=True, **_IN):
    run_id: uuid.UUID
    lease_token: uuid.UUID
    report: RunReport | None = None  # stored with the renewal, fenced like it


# A worker's figures: never negative, and small enough to stay exact as a float gauge.
StatCount = Annotated[int, Meta(ge=0, le=2**53)]
StatSeconds = Annotated[float, Meta(ge=0, le=1e15)]


class WorkerStats(msgspec.Struct, **_IN):
    """A worker's own figures, sent with each heartbeat and exposed by the coordinator
    as gauges labelled by worker_id. Counters and sums run since the worker started.
    Like every inbound body it is validated: a negative or absurd figure, or a field
    this coordinator does not know, is a 400 naming ``stats.<field>`` (a worker newer
    than its coordinator must not report figures the coordinator would store unread)."""

    busy: StatCount = 0
    slots: StatCount = 0
    runs_finished: StatCount = 0
    child_restarts: StatCount = 0
    run_seconds_sum: StatSeconds = 0.0
    executor_overhead_seconds_sum: StatSeconds = 0.0
    executor_overhead_seconds_count: StatCount = 0


class Heartbeat(msgspec.Struct, **_IN):
    worker_id: Annotated[str, Meta(min_length=1, max_length=200)]
    runs: list[RunRef] = []
    draining: bool = False
    stats: WorkerStats | None = None


class HeartbeatReply(msgspec.Struct, **_OUT):
    renewed: list[uuid.UUID]
    cancel: list[uuid.UUID]
    lost: list[uuid.UUID]
    known: bool = True


class Claim(msgspec.Struct, **_IN):
    worker_id: Annotated[str, Meta(min_length=1, max_length=200)]
    max: Annotated[int, Meta(ge=1, le=1000)]
    wait_seconds: Annotated[float, Meta(ge=0, le=60)] = 0.0
    queues: list[QueueSelector] = msgspec.field(default_factory=lambda: ["default"])


class ClaimedJob(msgspec.Struct, omit_defaults=True, **_OUT):
    job_id: uuid.UUID
    run_id: uuid.UUID
    lease_token: uuid.UUID
    lease_expires_at: dt.datetime
    type: str
    payload: Any
    queue: str
    attempt: int
    max_attempts: int
    timeout_seconds: int
    run_at: dt.datetime | None = None  # when it fell due: queue wait = claim - run_at
    # The results of the parents it depended on (dependsOn), by parent id: about 64 KB
    # at most (RunContext.parent_results).
    parent_results: dict[str, Any] | None = None
    # Its parents' ids and how many ended in each status (a batch callback's members).
    parent_ids: list[str] | None = None
    parent_counts: dict[str, int] | None = None
    # The submitting request's W3C trace context (migration 0022) and, for a job that
    # ran before, its latest ended run's id: the run's span joins that trace and links
    # the previous run's span (docs/decisions/0025-tracing.md).
    traceparent: str | None = None
    previous_run_id: uuid.UUID | None = None


class ClaimReply(msgspec.Struct, **_OUT):
    jobs: list[ClaimedJob]


class Completion(msgspec.Struct, **_IN):
    run_id: uuid.UUID
    lease_token: uuid.UUID
    outcome: RunOutcome
    error: Annotated[str, Meta(max_length=10_000)] | None = None
    result: Any = None
    permanent: bool = False
    duration_seconds: Annotated[float, Meta(ge=0)] | None = None  # the body, as timed
    # With outcome RateLimited: how long the job's bucket (its key's, else its queue's)
    # takes no starts.
    retry_after: Annotated[float, Meta(ge=0, le=86400)] | None = None
    # With outcome Snoozed: when the job runs again (30 days at most).
    snooze_seconds: Annotated[float, Meta(ge=0, le=30 * 86400)] | None = None
    report: RunReport | None = None  # its last progress and meta not yet sent


class Complete(msgspec.Struct, **_IN):
    """A batch of outcomes; with ``claim`` > 0 also a claim of up to that many more
    jobs (answered at once, never long-polled), so a busy worker needs one request
    per batch instead of two."""

    worker_id: Annotated[str, Meta(min_length=1, max_length=200)]
    completions: Annotated[list[Completion], Meta(min_length=1, max_length=1000)]
    claim: Annotated[int, Meta(ge=0, le=1000)] = 0
    queues: list[QueueSelector] = msgspec.field(default_factory=lambda: ["default"])


class CompletionResult(msgspec.Struct, **_OUT):
    """One completion's fate. ``accepted`` False: refused by fencing (the run is not
    the sender's any more, or it ended otherwise), nothing changed. ``duplicate`` True:
    accepted as a resend of how the run had already ended (same token, same outcome;
    the first answer was lost), nothing changed again. ``status`` is the job's status
    when accepted. ``duplicate`` defaults to False, so a reply without it (an older
    coordinator) still decodes; older workers ignore it."""

    run_id: uuid.UUID
    accepted: bool
    status: str | None = None
    duplicate: bool = False


class CompleteReply(msgspec.Struct, **_OUT):
    results: list[CompletionResult]
    jobs: list[ClaimedJob] = msgspec.field(default_factory=list)  # Complete.claim's


ConcurrencyLimit = Annotated[int, Meta(ge=1, le=100000)]

# A rate window's length: a whole number and a unit, ms, s, m (minutes), h or d;
# 1ms to 1d (checked by rate_limit_problem, which names the field).
RATE_PER_PATTERN = r"^[1-9][0-9]{0,9}(ms|s|m|h|d)$(?!\n)"
RATE_PER = re.compile(RATE_PER_PATTERN)
_RATE_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
RATE_PER_MAX_MS = 86_400_000
RATE_WINDOWS_MAX = 8
RateCount = Annotated[int, Meta(ge=1, le=1_000_000_000)]


class RateLimit(msgspec.Struct, **_IN):
    """One window of a queue's rate limit: at most ``limit`` job starts in any
    ``per`` (sliding, not calendar-aligned), across the whole cluster. ``burst`` is how
    many may start at once (default 1: evenly spaced); the sustained rate is then
    ``limit - burst + 1`` per ``per`` (docs/decisions/0019-rate-limits.md)."""

    limit: RateCount
    per: Annotated[str, Meta(pattern=RATE_PER_PATTERN,
                             description="a whole number and ms, s, m, h or d; 1ms to 1d")]
    burst: RateCount = 1

    @property
    def per_ms(self) -> int:
        return duration_ms(self.per)


def rate_limit_problem(limits: list[RateLimit], field: str = "rateLimits"
                       ) -> tuple[str, str] | None:
    """The first field of ``limits`` (the body's ``field``) that is out of range and
    what is wrong with it; None when every window is valid."""
    for i, w in enumerate(limits):
        if w.per_ms > RATE_PER_MAX_MS:
            return f"{field}[{i}].per", f"expected at most 1d, found {w.per}"
        if w.burst > w.limit:
            return (f"{field}[{i}].burst",
                    f"expected at most the window's limit ({w.limit}), found {w.burst}")
    return None


def duration_ms(text: str) -> int:
    """A duration matching RATE_PER_PATTERN (``"30s"``, ``"10m"``) in milliseconds."""
    m = RATE_PER.fullmatch(text)
    assert m is not None  # the pattern held at decoding
    return int(text[:m.start(1)]) * _RATE_UNIT_MS[m.group(1)]


UNIQUE_WINDOW_MIN_MS = 1000
UNIQUE_WINDOW_MAX_MS = 366 * 86_400_000


class Unique(msgspec.Struct, **_IN):
    """A unique job (docs/decisions/0024-unique-jobs.md): at most one job with ``key``
    among the jobs in ``states`` (default: the active ones; it must list every active
    status and may add terminal ones), and with ``window`` within one fixed bucket of
    that length (the next bucket is a new key). ``onConflict``: ``keep`` answers the
    job holding the key (throttle: the first wins); ``replace`` also gives it this
    submission's payload and runAt while it has not started (debounce)."""

    key: Annotated[str, Meta(min_length=1, max_length=200)]
    states: Annotated[list[JobStatus], Meta(min_length=1, max_length=8)] | None = None
    window: Annotated[str, Meta(pattern=RATE_PER_PATTERN,
                                description="a whole number and ms, s, m, h or d; "
                                            "1s to 366d")] | None = None
    on_conflict: Literal["keep", "replace"] = "keep"

    @property
    def window_ms(self) -> int | None:
        return None if self.window is None else duration_ms(self.window)

    @property
    def held_in(self) -> list[str]:
        """The statuses in which the job holds its key, as stored."""
        return [str(s) for s in (self.states if self.states is not None else ACTIVE)]


def unique_problem(u: Unique, field: str = "unique") -> tuple[str, str] | None:
    """The first field of ``u`` (the body's ``field``) that is out of range and what is
    wrong with it; None when it is valid."""
    if u.states is not None:
        for i, status in enumerate(u.states):
            if status in u.states[:i]:
                return f"{field}.states[{i}]", f"{status} is listed twice"
        missing = [s for s in ACTIVE if s not in u.states]
        if missing:
            return (f"{field}.states", "expected every active status (" + ", ".join(ACTIVE)
                    + ") and any of " + ", ".join(sorted(TERMINAL)) + " besides; missing "
                    + ", ".join(missing))
    ms = u.window_ms
    if ms is not None and not UNIQUE_WINDOW_MIN_MS <= ms <= UNIQUE_WINDOW_MAX_MS:
        return f"{field}.window", f"expected 1s to 366d, found {u.window}"
    return None


class UpdateQueue(msgspec.Struct, **_IN):
    """``PATCH /api/queues/{name}``: only the fields given change. ``concurrencyLimit``
    null removes the limit; ``rateLimits`` null (or []) removes every window, and a
    new list replaces the old one (its buckets start full)."""

    concurrency_limit: ConcurrencyLimit | msgspec.UnsetType | None = msgspec.UNSET
    paused: bool | msgspec.UnsetType = msgspec.UNSET
    rate_limits: (Annotated[list[RateLimit], Meta(max_length=RATE_WINDOWS_MAX)]
                  | msgspec.UnsetType | None) = msgspec.UNSET
    key_concurrency_limit: ConcurrencyLimit | msgspec.UnsetType | None = msgspec.UNSET
    key_rate_limits: (Annotated[list[RateLimit], Meta(max_length=RATE_WINDOWS_MAX)]
                      | msgspec.UnsetType | None) = msgspec.UNSET


class LimitUse(msgspec.Struct, omit_defaults=True, **_OUT):
    """One limit of a queue and how much of it is in use now: ``concurrency`` (``used``
    running of ``limit``) or one ``rate`` window (``used``: starts its bucket counts in
    the window now, ``until``: when the next start is allowed, if not now)."""

    kind: Literal["concurrency", "rate"]
    limit: int
    used: int
    per: str | None = None
    until: dt.datetime | None = None


class KeyLoad(msgspec.Struct, **_OUT):
    key: str
    waiting: int
    running: int


class QueueOut(msgspec.Struct, **_OUT):
    """A queue's settings and load. A queue never configured is active and unlimited
    (``updatedAt`` null). ``waiting`` counts Pending, Scheduled and Failed (awaiting a
    retry) jobs, up to 10,000: ``waitingCapped`` says the count stopped there."""

    name: str
    paused: bool
    concurrency_limit: int | None
    rate_limits: list[RateLimit] | None
    running: int
    waiting: int
    waiting_capped: bool
    updated_at: dt.datetime | None
    key_concurrency_limit: int | None = None
    key_rate_limits: list[RateLimit] | None = None
    limits: list[LimitUse] = msgspec.field(default_factory=list)
    top_keys: list[KeyLoad] = msgspec.field(default_factory=list)  # by waiting, up to 10
    workers: int = 0  # live (Active) workers that take jobs from this queue
    warning: Literal["no_worker"] | None = None  # waiting jobs, and no live worker serves it


class QueuePage(msgspec.Struct, **_OUT):
    items: list[QueueOut]


MAX_BULK_IDS = 1000


class BulkJobs(msgspec.Struct, **_IN):
    """``POST /api/jobs/bulk``: ``action`` on the jobs ``filter`` matches (the list's
    query parameters as a JSON object: schema/job_filter.py), and among ``ids`` when
    given (the rows a user selected). ``dryRun``: only count. ``limit`` (at most
    SCHEDULER_BULK_MAX) and ``after`` (the previous answer's ``next``) walk a large set
    in steps, as the dashboard does to show its progress."""

    action: Literal["retry", "cancel", "delete"]
    filter: dict[str, str | list[str]] = msgspec.field(default_factory=dict)
    ids: Annotated[list[uuid.UUID], Meta(min_length=1, max_length=MAX_BULK_IDS)] | None = None
    dry_run: bool = False
    limit: Annotated[int, Meta(ge=1)] | None = None
    after: uuid.UUID | None = None
    reason: Annotated[str, Meta(max_length=1000)] | None = None  # a retry's


class BulkSkipped(msgspec.Struct, **_OUT):
    id: uuid.UUID
    reason: str


class BulkResult(msgspec.Struct, **_OUT):
    """A bulk action's answer. ``matched``: jobs the filter matches, any status.
    ``count``: a dry run's, the jobs the real call would act on (at most the limit);
    the real call's, those it changed. ``skipped``: how many it leaves, by reason
    (``not retryable: Running``, ``locked``, ``has waiting dependents``, ...),
    ``skippedJobs`` the first 100 of those it met in its batches. ``next``: more may
    match past the limit; send it as ``after`` to go on."""

    action: str
    dry_run: bool
    matched: int
    count: int
    skipped: dict[str, int]
    skipped_jobs: list[BulkSkipped]
    next: uuid.UUID | None
    batches: int
