"""Token names (``SCHEDULER_ADMIN_TOKEN=ops:<token>``) and what the audit trail keeps of
a request body: the name is parsed and checked, a bare token is named by its hash, the
logs' Redactor still removes the token and keeps the name, and a body's secrets never
reach its row."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from scheduler_core.runtime.config import NamedToken, load_config, named_tokens
from scheduler_core.runtime.errors import ConfigError
from scheduler_core.runtime.logs import Redactor, secrets_of
from scheduler_core.web.audit import MAX_DETAILS_BYTES, REDACTED, details_of

SECRET = "s" * 12 + "-token-" + "t" * 12
OTHER = "o" * 30


def test_a_named_token_is_split_at_its_first_colon() -> None:
    assert (NamedToken("ops", SECRET),) == named_tokens(f"ops:{SECRET}")


def test_a_bare_token_is_named_by_the_first_8_hex_of_its_sha256() -> None:
    expected = "token-" + hashlib.sha256(SECRET.encode()).hexdigest()[:8]
    assert (NamedToken(expected, SECRET),) == named_tokens(SECRET)


def test_a_list_mixes_named_and_bare_tokens_and_the_roles_see_only_the_secrets() -> None:
    config = load_config({"SCHEDULER_ADMIN_TOKEN": f"ops:{SECRET}, {OTHER}",
                          "SCHEDULER_READ_TOKEN": "viewer:" + "v" * 20,
                          "SCHEDULER_WORKER_TOKEN": "fleet:" + "w" * 20})
    assert (SECRET, OTHER) == config.admin_tokens
    assert ("v" * 20,) == config.read_tokens
    assert ("w" * 20,) == config.worker_tokens
    assert "ops" == config.admin_named_tokens[0].name
    assert SECRET == config.client_token


def test_the_client_token_may_be_named_too() -> None:
    config = load_config({"SCHEDULER_TOKEN": f"cli:{SECRET}"})
    assert SECRET == config.client_token


@pytest.mark.parametrize("name", ["", "-ops", "o p", "ops!", "x" * 65])
def test_a_bad_name_is_refused_naming_the_setting_and_not_the_token(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config({"SCHEDULER_ADMIN_TOKEN": f"{name}:{SECRET}"})
    assert "SCHEDULER_ADMIN_TOKEN (token 1 of 1)" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_short_secret_behind_a_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_config({"SCHEDULER_ADMIN_TOKEN": "ops:short"})


def test_the_repr_of_a_named_token_masks_its_secret() -> None:
    assert SECRET not in repr(named_tokens(f"ops:{SECRET}"))


def test_the_redactor_removes_a_named_tokens_secret_and_keeps_its_name() -> None:
    config = load_config({"SCHEDULER_ADMIN_TOKEN": f"ops:{SECRET}",
                          "SCHEDULER_TOKEN": f"cli:{OTHER}"})
    redactor = Redactor(secrets_of(config))
    line = f'{{"token_name":"ops","seen":"ops:{SECRET}","client":"{OTHER}"}}'
    assert ('{"token_name":"ops","seen":"ops:[redacted]","client":"[redacted]"}'
            == redactor.redact(line))


def _secrets(*tokens: str) -> frozenset[bytes]:
    return frozenset(hashlib.sha256(t.encode()).digest() for t in tokens)


def test_a_body_keeps_its_fields_with_secret_names_and_token_values_redacted() -> None:
    raw = msgspec.json.encode({"reason": "flaky", "password": "pw", "nested": {
        "authToken": "x", "list": [SECRET, "fine"]}})
    details = details_of(raw, max_depth=64, secrets=_secrets(SECRET))
    assert {"body": {"reason": "flaky", "password": REDACTED, "nested": {
        "authToken": REDACTED, "list": [REDACTED, "fine"]}}} == details


def test_a_large_body_keeps_only_its_keys() -> None:
    raw = msgspec.json.encode({f"k{i}": ["v" * 190] * 5 for i in range(10)})
    details = details_of(raw, max_depth=64, secrets=frozenset())
    assert details["truncated"] is True
    assert len(msgspec.json.encode(details)) <= MAX_DETAILS_BYTES
    assert ["k0", "k1"] == details["bodyKeys"][:2]


@pytest.mark.parametrize(("raw", "kept"), [
    (b"[1, 2]", "list"), (b"{not json", "not JSON"), (b"[" * 100 + b"]" * 100, "too deep")])
def test_a_body_that_is_no_object_is_described_not_kept(raw: bytes, kept: str) -> None:
    assert kept == details_of(raw, max_depth=64, secrets=frozenset())["body"]


def test_text_jsonb_refuses_is_made_storable() -> None:
    details = details_of(b'{"a\\u0000": "b\\u0000"}', max_depth=64, secrets=frozenset())
    assert {"body": {"a\ufffd": "b\ufffd"}} == details


def test_more_than_20_fields_keep_the_first_20_and_say_how_many_more() -> None:
    details = details_of(msgspec.json.encode({f"k{i}": i for i in range(25)}),
                         max_depth=64, secrets=frozenset())
    assert ("5 more", 21) == (details["body"]["…"], len(details["body"]))
