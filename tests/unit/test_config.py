"""runtime.config.load_config: defaults, environment parsing, and errors that name the
variable."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from scheduler_core.runtime.config import SETTINGS, Config, check_coordinator_urls, load_config
from scheduler_core.runtime.errors import ConfigError


def test_an_empty_environment_gives_the_defaults() -> None:
    assert Config() == load_config({})


def test_every_setting_parses_as_the_type_of_its_default() -> None:
    assert {} == {s.env: (s.kind, type(s.default)) for s in SETTINGS
                  if type(s.default) is not s.kind}


def test_every_config_field_has_a_setting() -> None:
    derived = {"coordinator_urls"}  # from COORDINATOR_URL (coordinator_url)
    assert set(Config.__struct_fields__) == {s.field for s in SETTINGS} | derived


def test_the_environment_is_read_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_PORT", "6123")
    assert 6123 == load_config().port


@pytest.mark.parametrize(("env", "field", "value"), [
    ("DATABASE_URL", "database_url", "postgresql://u@h/db"),
    ("SCHEDULER_PORT", "port", 8080),
    ("SCHEDULER_DB_POOL_SIZE", "db_pool_size", 3),
    ("SCHEDULER_LEASE_SECONDS", "lease_seconds", 2.5),
    ("SCHEDULER_MAX_BODY_BYTES", "max_body_bytes", 4096),
    ("SCHEDULER_WORKERS", "workers", 0),
    ("SCHEDULER_LOG_FORMAT", "log_format", "json"),
    ("COORDINATOR_URL", "coordinator_url", "http://10.0.0.1:5000"),
])
def test_a_variable_sets_its_field_with_its_type(env: str, field: str, value: object) -> None:
    got = getattr(load_config({env: str(value)}), field)
    assert (value, type(value)) == (got, type(got))


def test_an_integer_may_be_written_as_a_float_setting() -> None:
    assert 3.0 == load_config({"SCHEDULER_LEASE_SECONDS": "3"}).lease_seconds


def test_an_empty_variable_means_the_default() -> None:
    assert 5000 == load_config({"SCHEDULER_PORT": ""}).port


def test_unknown_variables_are_ignored() -> None:
    assert Config() == load_config({"SCHEDULER_NO_SUCH_THING": "1", "PATH": "/bin"})


def test_overrides_win_over_the_environment() -> None:
    assert 7000 == load_config({"SCHEDULER_PORT": "6000"}, port=7000).port


@pytest.mark.parametrize(("env", "raw", "expected"), [
    ("SCHEDULER_PORT", "http", "int"),
    ("SCHEDULER_PORT", "50.5", "int"),
    ("SCHEDULER_LEASE_SECONDS", "thirty", "float"),
    ("SCHEDULER_DB_POOL_SIZE", "4x", "int"),
])
def test_a_value_of_the_wrong_type_is_a_config_error_naming_the_variable(
        env: str, raw: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({env: raw})
    assert f"{env} must be {expected}, found {raw!r}" == str(info.value)


@pytest.mark.parametrize("env", ["SCHEDULER_LEASE_SECONDS", "SCHEDULER_DB_POOL_SIZE",
                                 "SCHEDULER_MAX_BODY_BYTES", "SCHEDULER_RETRY_BASE_SECONDS",
                                 "SCHEDULER_CLAIM_WAIT_SECONDS",
                                 "SCHEDULER_MAX_PAYLOAD_BYTES"])
def test_a_setting_that_must_be_positive_refuses_zero_naming_the_variable(env: str) -> None:
    with pytest.raises(ConfigError, match=f"^{env} must be positive, found 0"):
        load_config({env: "0"})


def test_an_unknown_log_format_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^SCHEDULER_LOG_FORMAT must be"):
        load_config({"SCHEDULER_LOG_FORMAT": "xml"})


def test_an_unknown_http_private_policy_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^SCHEDULER_HTTP_ALLOW_PRIVATE must be auto, true "
                                          r"or false, found 'yes'"):
        load_config({"SCHEDULER_HTTP_ALLOW_PRIVATE": "yes"})


@pytest.mark.parametrize("env", ["SCHEDULER_WORKERS", "SCHEDULER_WORKER_SLOTS",
                                 "SCHEDULER_DRAIN_TIMEOUT_SECONDS"])
def test_a_negative_count_is_a_config_error_naming_the_variable(env: str) -> None:
    with pytest.raises(ConfigError, match=env):
        load_config({env: "-1"})


def test_a_zero_heartbeat_interval_means_a_third_of_the_lease() -> None:
    assert 4.0 == load_config({"SCHEDULER_LEASE_SECONDS": "12",
                               "SCHEDULER_HEARTBEAT_SECONDS": "0"}).heartbeat_interval


def test_an_explicit_heartbeat_interval_is_used() -> None:
    assert 1.5 == load_config({"SCHEDULER_HEARTBEAT_SECONDS": "1.5"}).heartbeat_interval


def test_a_worker_is_lost_after_twice_the_lease_by_default() -> None:
    assert 20.0 == load_config({"SCHEDULER_LEASE_SECONDS": "10"}).worker_lost_after


def test_zero_worker_slots_means_the_cpu_count() -> None:
    assert (os.cpu_count() or 1) == load_config({"SCHEDULER_WORKER_SLOTS": "0"}).slots


def test_pgdata_lives_in_the_data_dir() -> None:
    assert Path("/srv/sc/pgdata") == load_config({"SCHEDULER_DATA_DIR": "/srv/sc"}).pgdata


# -- COORDINATOR_URL: one URL or several ------------------------------------------------

def test_one_coordinator_url_is_the_only_one() -> None:
    config = load_config({"COORDINATOR_URL": "http://10.0.0.1:5000"})
    assert ("http://10.0.0.1:5000", ("http://10.0.0.1:5000",)) == (
        config.coordinator_url, config.coordinator_urls)


def test_the_default_coordinator_url_is_the_only_one() -> None:
    assert ("http://127.0.0.1:5000",) == Config().coordinator_urls


def test_comma_separated_coordinator_urls_are_kept_in_order_the_first_as_the_url() -> None:
    config = load_config({"COORDINATOR_URL": " http://10.0.0.1:5000 ,,https://b.example/ "})
    assert ("http://10.0.0.1:5000", ("http://10.0.0.1:5000", "https://b.example/")) == (
        config.coordinator_url, config.coordinator_urls)


def test_an_override_may_list_coordinator_urls() -> None:
    config = load_config({"COORDINATOR_URL": "http://a:1"}, coordinator_url="http://b:2,http://c:3")
    assert ("http://b:2", "http://c:3") == config.coordinator_urls


def test_a_copy_keeps_the_coordinator_urls_unless_the_url_changes() -> None:
    config = load_config({"COORDINATOR_URL": "http://a:1,http://b:2"})
    assert (("http://a:1", "http://b:2"), ("http://c:3",)) == (
        msgspec.structs.replace(config, port=1).coordinator_urls,
        msgspec.structs.replace(config, coordinator_url="http://c:3").coordinator_urls)


@pytest.mark.parametrize("value", ["http://10.0.0.1:5000", "https://scheduler.example.com",
                                   "http://a:5000,https://b/prefix", "http://[::1]:5000"])
def test_http_and_https_coordinator_urls_with_a_host_are_accepted(value: str) -> None:
    check_coordinator_urls(load_config({"COORDINATOR_URL": value}))


@pytest.mark.parametrize(("value", "where", "found"), [
    ("localhost:5000", "COORDINATOR_URL", "localhost:5000"),
    ("ftp://10.0.0.1", "COORDINATOR_URL", "ftp://10.0.0.1"),
    ("http://", "COORDINATOR_URL", "http://"),
    (",", "COORDINATOR_URL", ","),
    ("http://10.0.0.1:5000,10.0.0.2:5000", "COORDINATOR_URL (URL 2 of 2)", "10.0.0.2:5000"),
])
def test_a_coordinator_url_without_scheme_or_host_is_a_config_error_naming_it(
        value: str, where: str, found: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_coordinator_urls(load_config({"COORDINATOR_URL": value}))
    assert (f"{where} must be an http:// or https:// URL with a host (several: "
            f"comma-separated), found {found!r}") == str(info.value)


def test_a_coordinator_url_with_a_port_that_is_not_a_number_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^COORDINATOR_URL must be an http:// or https:// "
                                          r"URL, found 'http://a:port'"):
        check_coordinator_urls(load_config({"COORDINATOR_URL": "http://a:port"}))


@pytest.mark.parametrize(("value", "allowed"), [
    ("http://127.0.0.1:5000,http://localhost:5001", True),
    ("http://127.0.0.1:5000,http://10.0.0.2:5000", False),
    ("http://10.0.0.2:5000,http://127.0.0.1:5000", False),
])
def test_auto_allows_private_addresses_only_when_every_coordinator_is_loopback(
        value: str, allowed: bool) -> None:
    assert allowed == load_config({"COORDINATOR_URL": value}).http_private_allowed
