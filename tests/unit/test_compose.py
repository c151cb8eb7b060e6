"""compose.yaml, the Dockerfile and .env.example, checked against the code they run.

No Docker engine runs the tests, so the files are checked by construction: every
command is a real ``scheduler`` invocation (parsed by the real CLI parser), every
variable a real setting, every port the one the coordinator binds.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from scheduler_core.command.cli import build_parser
from scheduler_core.runtime.config import SETTINGS, Config, bind_refusal, env_example, load_config

ROOT = Path(__file__).resolve().parents[2]
SETTING_NAMES = {s.env for s in SETTINGS}
SCHEDULER_SERVICES = ("coordinator", "worker", "coordinator-replica")
DRAIN_MARGIN_SECONDS = 5.0


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    return dict(services[name])


# What an operator's .env holds (compose.yaml's header says which): the tokens.
DOT_ENV = {"SCHEDULER_ADMIN_TOKEN": "admin-token-0123456789abcdef",
           "SCHEDULER_WORKER_TOKEN": "worker-token-0123456789abcdef"}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[?-])([^}]*))?\}")


class MissingVariable(Exception):
    """What ``docker compose`` stops with for an unset ``${NAME:?message}``."""


def interpolate(value: str, dot_env: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?message}`` (with or
    without the colon: empty counts as unset only with it)."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        value = dot_env.get(name)
        unset = value is None or (op.startswith(":") and value == "")
        if unset and op.endswith("?"):
            raise MissingVariable(f"{name}: {arg}")
        if unset and op.endswith("-"):
            return arg
        return value or ""
    return _VARIABLE.sub(one, value)


def environment(svc: dict[str, Any], dot_env: dict[str, str] = DOT_ENV) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # the "NAME=value" form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): interpolate(str(v), dot_env) for k, v in env.items()}


def as_argv(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def seconds(duration: str | int | float) -> float:
    """A compose duration (``45s``, ``1m30s``, ``500ms``) in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def parse_cli(argv: list[str]) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"not a valid scheduler command line: {argv}") from exc


# -- the Dockerfile ---------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    out = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, rest = line.strip().partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def exec_form(instruction: str) -> list[str]:
    [args] = [rest for name, rest in dockerfile() if name == instruction][-1:]
    value = json.loads(args)  # exec form: a JSON array, so signals reach the process
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, rest in dockerfile():
        if name == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_the_image_is_built_on_a_slim_python() -> None:
    bases = [rest.split()[0] for name, rest in dockerfile() if name == "FROM"]
    assert bases, "the Dockerfile has no FROM"
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", bases[-1]), bases[-1]


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [rest.split(":")[0] for name, rest in dockerfile() if name == "USER"]
    assert users, "the Dockerfile never switches USER"
    assert users[-1] not in ("root", "0")


def test_the_image_entrypoint_is_the_scheduler_command() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert ["scheduler"] == exec_form("ENTRYPOINT")
    assert "scheduler_core.command.cli:main" == scripts["scheduler"]


def test_the_image_default_command_is_a_valid_cli_invocation() -> None:
    assert "coordinator" == parse_cli(exec_form("CMD")).command


def test_the_image_environment_uses_only_real_settings_with_valid_values() -> None:
    env = dockerfile_env()
    assert set() == {k for k in env if not k.startswith(("PYTHON", "PIP_"))} - SETTING_NAMES
    load_config({k: v for k, v in env.items() if k in SETTING_NAMES})


def test_the_image_exposes_the_port_the_coordinator_binds() -> None:
    exposed = [rest for name, rest in dockerfile() if name == "EXPOSE"]
    assert [str(load_config(dockerfile_env()).port)] == exposed


# -- compose.yaml -----------------------------------------------------------------------


def service_config(name: str) -> Config:
    """What ``scheduler`` reads inside the service: the image's ENV, then the service's."""
    env = {**dockerfile_env(), **environment(service(name))}
    return load_config({k: v for k, v in env.items() if k in SETTING_NAMES})


@pytest.mark.parametrize("name", SCHEDULER_SERVICES)
def test_a_service_command_is_a_real_scheduler_subcommand(name: str) -> None:
    svc = service(name)
    entrypoint = as_argv(svc.get("entrypoint") or exec_form("ENTRYPOINT"))
    command = as_argv(svc.get("command") or exec_form("CMD"))
    assert ["scheduler"] == entrypoint
    assert name.split("-")[0] == parse_cli(command).command


@pytest.mark.parametrize("name", SCHEDULER_SERVICES)
def test_a_service_sets_only_real_settings(name: str) -> None:
    assert set() == set(environment(service(name))) - SETTING_NAMES
    service_config(name)  # and every value parses


@pytest.mark.parametrize("name", SCHEDULER_SERVICES)
def test_a_service_runs_the_image_built_here(name: str) -> None:
    svc = service(name)
    assert "." == (svc["build"] if isinstance(svc["build"], str) else svc["build"]["context"])
    assert service("coordinator")["image"] == svc["image"]


def test_compose_interpolates_only_real_settings() -> None:
    text = (ROOT / "compose.yaml").read_text()
    names = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    assert set() == names - SETTING_NAMES


def test_postgres_is_an_official_image_with_a_readiness_check_and_a_named_volume() -> None:
    pg = service("postgres")
    assert re.fullmatch(r"postgres:1[67](\.\d+)?(-\w+)?", pg["image"]), pg["image"]
    assert "pg_isready" in " ".join(as_argv(pg["healthcheck"]["test"]))
    volumes = [v.split(":")[0] for v in pg["volumes"]]
    assert set(volumes) <= set(compose()["volumes"]), volumes


def test_the_coordinator_starts_once_postgres_is_healthy() -> None:
    assert {"condition": "service_healthy"} == service("coordinator")["depends_on"]["postgres"]


def test_the_coordinator_and_its_clients_use_the_compose_database_and_port() -> None:
    config = service_config("coordinator")
    db = urlsplit(config.database_url)
    assert ("postgres", 5432) == (db.hostname, db.port or 5432)
    assert "0.0.0.0" == config.host
    url = urlsplit(service_config("worker").coordinator_url)
    assert ("coordinator", config.port) == (url.hostname, url.port)


def test_the_coordinator_publishes_the_port_it_binds() -> None:
    port = service_config("coordinator").port
    published = [str(p).split(":")[-1].split("/")[0] for p in service("coordinator")["ports"]]
    assert [str(port)] == published


def test_the_coordinator_health_check_asks_its_own_port_for_readiness() -> None:
    test = " ".join(as_argv(service("coordinator")["healthcheck"]["test"]))
    urls = re.findall(r"https?://[^\s'\"]+", test)
    assert [f"http://127.0.0.1:{service_config('coordinator').port}/health/ready"] == urls


def test_the_worker_scales_without_fixed_names_or_ports() -> None:
    worker = service("worker")
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "SCHEDULER_WORKER_ID" not in environment(worker)  # hostname-pid-random


def test_the_worker_is_stopped_with_sigterm_after_its_drain_timeout() -> None:
    worker = service("worker")
    drain = service_config("worker").drain_timeout_seconds
    assert "SIGTERM" == worker["stop_signal"]
    assert seconds(worker["stop_grace_period"]) >= drain + DRAIN_MARGIN_SECONDS


def test_the_worker_starts_once_the_coordinator_is_healthy() -> None:
    assert {"condition": "service_healthy"} == service("worker")["depends_on"]["coordinator"]


def test_the_worker_gets_no_database_credentials() -> None:
    assert "DATABASE_URL" not in environment(service("worker"))


def test_the_coordinator_binds_beyond_loopback_only_with_tokens() -> None:
    config = service_config("coordinator")
    assert (True, None) == (config.auth_enabled, bind_refusal(config))


@pytest.mark.parametrize("missing", ["SCHEDULER_ADMIN_TOKEN", "SCHEDULER_WORKER_TOKEN"])
def test_compose_refuses_to_start_without_the_admin_and_worker_tokens(missing: str) -> None:
    dot_env = {k: v for k, v in DOT_ENV.items() if k != missing}
    with pytest.raises(MissingVariable, match=missing):
        environment(service("coordinator"), dot_env)


def test_the_worker_sends_a_token_the_coordinator_accepts() -> None:
    tokens = service_config("coordinator").worker_tokens
    assert service_config("worker").worker_tokens[0] in tokens


# -- .env.example -----------------------------------------------------------------------


def env_example_pairs() -> list[tuple[str, str]]:
    pairs = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: expected NAME=value, found {line!r}"
            pairs.append((name.strip(), value.strip()))
    return pairs


def test_env_example_lists_exactly_the_settings_in_order() -> None:
    assert [s.env for s in SETTINGS] == [name for name, _ in env_example_pairs()]


def test_env_example_gives_each_setting_its_default() -> None:
    assert {s.env: str(s.default) for s in SETTINGS} == dict(env_example_pairs())


def test_env_example_is_written_from_the_settings_with_their_docs() -> None:
    assert env_example() == (ROOT / ".env.example").read_text(), (
        "regenerate it: python -c \"from runtime.config import env_example; "
        "print(env_example(), end='')\" > .env.example")


def test_the_coordinator_health_check_needs_no_token() -> None:
    path = urlsplit(re.findall(r"https?://[^\s'\"]+", " ".join(
        as_argv(service("coordinator")["healthcheck"]["test"])))[0]).path
    assert path in service_config("coordinator").public_path_set


# -- the "balanced" profile: HAProxy in front of scaled coordinators ---------------------

HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"


def haproxy_cfg() -> str:
    return HAPROXY_CFG.read_text()


def test_the_balanced_profile_adds_only_the_balancer_and_the_replicas() -> None:
    profiled = {name for name, svc in compose()["services"].items() if svc.get("profiles")}
    assert {"balancer", "coordinator-replica"} == profiled
    for name in profiled:
        assert ["balanced"] == service(name)["profiles"]


def test_the_replicas_run_as_the_coordinator_without_a_published_port() -> None:
    replica = service("coordinator-replica")
    assert "ports" not in replica and "container_name" not in replica
    assert environment(service("coordinator")) == environment(replica)
    assert parse_cli(as_argv(replica["command"])).no_migrate  # the coordinator migrates
    assert replica["deploy"]["replicas"] >= 2


def test_the_balancer_runs_haproxy_with_the_shipped_configuration() -> None:
    balancer = service("balancer")
    assert re.fullmatch(r"haproxy:2\.([6-9]|\d\d)(\.\d+)?(-\w+)?", balancer["image"])
    [mount] = balancer["volumes"]
    source, target = mount.split(":")[:2]
    assert (ROOT / source).resolve() == HAPROXY_CFG
    assert "/usr/local/etc/haproxy/haproxy.cfg" == target  # where the image reads it


def test_the_balancer_publishes_the_port_its_configuration_binds() -> None:
    [bind] = re.findall(r'^\s*bind "\$\{HAPROXY_BIND-:(\d+)\}"', haproxy_cfg(), flags=re.M)
    published = [str(p).split(":")[-1] for p in service("balancer")["ports"]]
    assert [bind] == published


def test_the_balancer_finds_each_coordinator_service_on_its_port() -> None:
    targets = re.findall(r"^\s*server-template \S+ \d+ ([\w-]+):(\d+) .*resolvers docker",
                         haproxy_cfg(), flags=re.M)
    port = str(service_config("coordinator").port)
    assert {("coordinator", port), ("coordinator-replica", port)} == set(targets)
    assert re.search(r"^\s*nameserver \S+ 127\.0\.0\.11:53$", haproxy_cfg(), flags=re.M)


def test_the_balancer_checks_readiness_on_a_public_path() -> None:
    [path] = re.findall(r"^\s*http-check send meth GET uri (\S+)", haproxy_cfg(), flags=re.M)
    assert "/health/ready" == path
    assert path in service_config("coordinator").public_path_set


def test_the_balancer_waits_longer_than_the_longest_long_poll() -> None:
    import msgspec

    from scheduler_core.schema import wire

    [server] = re.findall(r"^\s*timeout server (\S+)$", haproxy_cfg(), flags=re.M)
    [wait] = [f for f in msgspec.inspect.type_info(wire.Claim).fields  # type: ignore[attr-defined]
              if f.name == "wait_seconds"]
    assert seconds(server) > wait.type.le


def test_a_draining_coordinator_outlasts_the_balancers_checks() -> None:
    [line] = re.findall(r"^\s*default-server (.*)$", haproxy_cfg(), flags=re.M)
    words = line.split()
    inter, fall = seconds(words[words.index("inter") + 1]), int(words[words.index("fall") + 1])
    for name in ("coordinator", "coordinator-replica"):
        config = service_config(name)
        assert config.drain_delay_seconds > inter * fall
        assert seconds(service(name)["stop_grace_period"]) >= (
            config.drain_delay_seconds + DRAIN_MARGIN_SECONDS)


def test_the_worker_talks_to_the_balancer_when_told_to() -> None:
    balanced = {**DOT_ENV, "COORDINATOR_URL": "http://balancer:5000"}
    url = urlsplit(environment(service("worker"), balanced)["COORDINATOR_URL"])
    [bind] = re.findall(r'HAPROXY_BIND-:(\d+)', haproxy_cfg())
    assert ("balancer", int(bind)) == (url.hostname, url.port)
