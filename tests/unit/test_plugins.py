"""handlers.load_plugins: entry points and named modules, on a registry of its own."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import msgspec
import pytest

from scheduler_core.handlers import (
    ENTRY_POINT_GROUP,
    PluginError,
    Registry,
    RunContext,
    load_plugins,
)
from scheduler_core.handlers import plugins as plugins_module

NOT_CALLABLE = 42


class EchoPayload(msgspec.Struct):
    text: str


def register_echo(registry: Registry) -> None:
    @registry.handler("echo", payload=EchoPayload, timeout_seconds=7)
    def echo(payload: EchoPayload, ctx: RunContext) -> str:
        return payload.text


def register_echo_again(registry: Registry) -> None:
    register_echo(registry)


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: EntryPoint) -> None:
    monkeypatch.setattr(plugins_module, "entry_points",
                        lambda group: [e for e in eps if e.group == group])


def test_a_callable_named_by_module_and_name_registers_its_handlers() -> None:
    registry = Registry()
    assert [f"{__name__}:register_echo"] == load_plugins(
        registry, [f"{__name__}:register_echo"], entry_points_group=None)
    assert (["echo"], 7) == (registry.names(), registry.get("echo").timeout_seconds)


def test_loading_the_same_source_twice_is_a_no_op() -> None:
    registry = Registry()
    load_plugins(registry, [f"{__name__}:register_echo"], entry_points_group=None)
    assert [] == load_plugins(registry, [f" {__name__}:register_echo "], entry_points_group=None)
    assert ["echo"] == registry.names()


def test_a_module_is_imported() -> None:
    registry = Registry()
    assert ["json"] == load_plugins(registry, ["json", ""], entry_points_group=None)


def test_entry_points_of_the_group_are_loaded_before_the_modules(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(
        monkeypatch,
        EntryPoint("echo", f"{__name__}:register_echo", ENTRY_POINT_GROUP),
        EntryPoint("other", f"{__name__}:register_echo_again", "some.other.group"))
    registry = Registry()
    assert [f"{__name__}:register_echo", "json"] == load_plugins(registry, ["json"])
    assert ["echo"] == registry.names()


def test_a_missing_module_is_a_plugin_error_naming_it() -> None:
    with pytest.raises(PluginError, match=r"handler module 'no_such_module_x'.*"
                                          r"ModuleNotFoundError"):
        load_plugins(Registry(), ["no_such_module_x"], entry_points_group=None)


def test_a_broken_entry_point_is_a_plugin_error_naming_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, EntryPoint("broken", f"{__name__}:nothing_here",
                                            ENTRY_POINT_GROUP))
    with pytest.raises(PluginError, match=r"entry point 'broken'.*AttributeError"):
        load_plugins(Registry(), [])


def test_something_neither_module_nor_callable_is_a_plugin_error() -> None:
    with pytest.raises(PluginError, match="expected a module or a callable"):
        load_plugins(Registry(), [f"{__name__}:NOT_CALLABLE"], entry_points_group=None)


def test_two_plugins_registering_one_name_is_a_plugin_error() -> None:
    registry = Registry()
    with pytest.raises(PluginError, match="'echo' is already registered"):
        load_plugins(registry, [f"{__name__}:register_echo", f"{__name__}:register_echo_again"],
                     entry_points_group=None)


def test_the_example_package_registers_greet_and_an_async_handler() -> None:
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "examples" / "scheduler-example-handlers"
    sys.path.insert(0, str(root))
    try:
        registry = Registry()
        load_plugins(registry, ["scheduler_example_handlers:register"], entry_points_group=None)
        ctx = RunContext(job_id="j", attempt=1, data_dir="/nonexistent")
        assert {"greeting": "hello, Ada"} == registry.run("greet", {"name": "Ada"}, ctx)
        assert {"greeting": "hello, Bo"} == registry.run(
            "greet_later", {"name": "Bo", "delaySeconds": 0}, ctx)
        assert registry.get("greet_later").is_async
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("scheduler_example_handlers", None)
