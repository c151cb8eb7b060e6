"""The TCP settings runtime/db.py adds to a connection string that lacks them."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from scheduler_core.runtime.db import TCP_DEFAULTS, with_network_defaults


def test_a_url_without_tcp_settings_gets_the_defaults_and_keeps_the_rest() -> None:
    got = conninfo_to_dict(with_network_defaults(
        "postgresql://app:s3cret@db.internal:5433/jobs?application_name=x", 10))
    assert {**TCP_DEFAULTS, "user": "app", "password": "s3cret", "host": "db.internal",
            "port": "5433", "dbname": "jobs", "application_name": "x"} == got


def test_several_hosts_share_the_connect_deadline_with_libpqs_floor() -> None:
    two = conninfo_to_dict(with_network_defaults("postgresql://a:1,b:2/d", 10))
    assert "5" == two["connect_timeout"]
    five = conninfo_to_dict(with_network_defaults("host=a,b,c,d,e dbname=d", 10))
    assert "2" == five["connect_timeout"]


def test_one_host_gets_no_connect_timeout() -> None:
    assert "connect_timeout" not in conninfo_to_dict(
        with_network_defaults("postgresql://a/d", 10))


def test_what_the_string_sets_wins() -> None:
    got = conninfo_to_dict(with_network_defaults(
        "postgresql://a,b/d?connect_timeout=7&keepalives_idle=120&tcp_user_timeout=0", 10))
    assert ("7", "120", "0") == (got["connect_timeout"], got["keepalives_idle"],
                                 got["tcp_user_timeout"])
    assert "5" == got["keepalives_interval"]
