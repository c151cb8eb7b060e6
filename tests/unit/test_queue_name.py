"""The queue-name rule is written once (schema/wire.py) and the Structs, the queues API's
path check and the CLI all apply it alike."""

from __future__ import annotations

import argparse

import msgspec
import pytest

from scheduler_core.command import cli
from scheduler_core.schema import wire
from scheduler_core.web import queues_api
from scheduler_core.web.errors import ApiError

NAMES = [("default", True), ("a.b-c_D9", True), ("q" * 64, True), ("q" * 65, False),
         ("", False), ("a b", False), ("a/b", False), ("é", False), ("a\n", False)]


@pytest.mark.parametrize(("name", "valid"), NAMES)
def test_the_pattern_decides_a_queue_name(name: str, valid: bool) -> None:
    assert valid == bool(wire.QUEUE_NAME.fullmatch(name))


@pytest.mark.parametrize(("name", "valid"), NAMES)
def test_a_submission_takes_the_names_the_pattern_takes(name: str, valid: bool) -> None:
    body = msgspec.json.encode({"type": "noop", "queue": name})
    try:
        msgspec.json.decode(body, type=wire.SubmitJob)
    except msgspec.ValidationError:
        assert not valid
    else:
        assert valid


@pytest.mark.parametrize(("name", "valid"), NAMES)
def test_the_queues_api_takes_the_names_the_pattern_takes(name: str, valid: bool) -> None:
    try:
        queues_api.parse_name(name)
    except ApiError:
        assert not valid
    else:
        assert valid


@pytest.mark.parametrize(("name", "valid"), NAMES)
def test_the_cli_takes_the_names_the_pattern_takes(name: str, valid: bool) -> None:
    try:
        cli._queue_name(name)
    except argparse.ArgumentTypeError:
        assert not valid
    else:
        assert valid
