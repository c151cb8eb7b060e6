"""web.errors.from_msgspec: msgspec's errors become a 400 naming the field."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from scheduler_core.schema import wire
from scheduler_core.web.errors import ApiError, field_path, from_msgspec


def error_for(raw: bytes, type_: Any = wire.SubmitJob, **kw: Any) -> ApiError:
    with pytest.raises(msgspec.MsgspecError) as info:
        msgspec.json.decode(raw, type=type_)
    return from_msgspec(info.value, **kw)


CASES: list[tuple[str, bytes, Any, str, str]] = [
    # (case id, raw body, type, expected error code, expected field)
    ("wrong_type", b'{"type": "noop", "maxAttempts": "x"}', wire.SubmitJob,
     "validation_error", "maxAttempts"),
    ("below_minimum", b'{"type": "noop", "timeoutSeconds": 0}', wire.SubmitJob,
     "validation_error", "timeoutSeconds"),
    ("above_maximum", b'{"type": "noop", "priority": 101}', wire.SubmitJob,
     "validation_error", "priority"),
    # (SubmitJob's type is checked by the routes: a scheduled workflow has none.)
    ("missing_required", b'{"steps": {"a": {"type": "noop"}}}', wire.SubmitWorkflow,
     "validation_error", "name"),
    ("unknown_field", b'{"type": "noop", "colour": "red"}', wire.SubmitJob,
     "validation_error", "colour"),
    ("unknown_field_with_punctuation", b'{"type": "noop", "a-b.c": 1}', wire.SubmitJob,
     "validation_error", "a-b.c"),
    ("pattern", b'{"type": "noop", "queue": "a b"}', wire.SubmitJob, "validation_error",
     "queue"),
    ("literal", b'{"type": "noop", "misfirePolicy": "never"}', wire.SubmitJob,
     "validation_error", "misfirePolicy"),
    ("nested_in_a_list", b'{"workerId": "w", "completions": [{"runId": "x"}]}', wire.Complete,
     "validation_error", "completions[0].runId"),
    ("nested_missing", b'{"workerId": "w", "completions": [{}]}', wire.Complete,
     "validation_error", "completions[0].runId"),
    ("list_too_short", b'{"workerId": "w", "completions": []}', wire.Complete,
     "validation_error", "completions"),
    ("not_an_object", b"[1, 2]", wire.SubmitJob, "validation_error", "body"),
    ("null_document", b"null", wire.SubmitJob, "validation_error", "body"),
    ("malformed_json", b'{"type": ', wire.SubmitJob, "malformed_json", "body"),
    ("not_json", b"hello", wire.SubmitJob, "malformed_json", "body"),
]


@pytest.mark.parametrize(("raw", "type_", "error", "field"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_a_msgspec_error_becomes_a_400_naming_the_field(
        raw: bytes, type_: Any, error: str, field: str) -> None:
    exc = error_for(raw, type_)
    assert (400, error, field) == (exc.status, exc.body.error, exc.body.field)


def test_the_message_of_a_type_error_says_what_was_expected_and_found() -> None:
    assert "Expected `int | null`, got `str`" == error_for(
        b'{"type": "noop", "maxAttempts": "x"}').body.message


def test_the_message_drops_msgspec_s_path_suffix() -> None:
    assert " - at " not in error_for(b'{"type": "noop", "priority": 101}').body.message


def test_a_missing_field_says_so() -> None:
    assert "required field is missing" == error_for(b"{}", wire.SubmitWorkflow).body.message


def test_an_unknown_field_says_so() -> None:
    assert "unknown field" == error_for(b'{"type": "noop", "x": 1}').body.message


def test_malformed_json_says_the_body_is_not_json() -> None:
    assert error_for(b"{").body.message.startswith("the body is not valid JSON: ")


def test_a_prefix_is_put_before_the_field() -> None:
    assert "payload.reason" == error_for(b'{"reason": 5}', wire.RetryJob,
                                         prefix="payload.").body.field


def test_a_prefix_names_the_whole_value_when_the_error_has_no_path() -> None:
    assert "payload" == error_for(b"[1]", dict[str, str], prefix="payload.").body.field


@pytest.mark.parametrize(("path", "field"), [
    ("", None), (".maxAttempts", "maxAttempts"), (".payload.url", "payload.url"),
    ("[0].type", "[0].type"), (".completions[2].runId", "completions[2].runId"),
])
def test_field_path_turns_a_msgspec_path_into_a_field(path: str, field: str | None) -> None:
    assert field == field_path(path)


def test_an_api_error_carries_its_status_and_an_error_body() -> None:
    exc = ApiError(409, "conflict", "it is finished", "id")
    assert (409, wire.ErrorBody(error="conflict", message="it is finished", field="id"),
            "it is finished") == (exc.status, exc.body, str(exc))
