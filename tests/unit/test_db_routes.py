"""command/db_routes.py: where the coordinator's connections go under each
SCHEDULER_DB_POOLER, and the refusal of a transaction pooler without a direct URL."""

from __future__ import annotations

import pytest

from scheduler_core.command.db_routes import DatabaseRoutes, database_routes
from scheduler_core.runtime.config import load_config
from scheduler_core.runtime.errors import ConfigError

POOLED = "postgresql://app@bouncer:6432/jobs"
DIRECT = "postgresql://app@primary:5432/jobs"


@pytest.mark.parametrize(("env", "expected"), [
    ({}, DatabaseRoutes(pooled=POOLED, direct=POOLED, prepare_threshold=5, echoes=True)),
    ({"SCHEDULER_DIRECT_DATABASE_URL": DIRECT},
     DatabaseRoutes(pooled=POOLED, direct=DIRECT, prepare_threshold=5, echoes=True)),
    ({"SCHEDULER_DB_POOLER": "transaction", "SCHEDULER_DIRECT_DATABASE_URL": DIRECT},
     DatabaseRoutes(pooled=POOLED, direct=DIRECT, prepare_threshold=None, echoes=False)),
])
def test_routes_follow_the_pooler_setting(env: dict[str, str],
                                          expected: DatabaseRoutes) -> None:
    assert expected == database_routes(load_config({"DATABASE_URL": POOLED, **env}), POOLED)


def test_a_transaction_pooler_without_a_direct_url_is_refused_naming_both() -> None:
    config = load_config({"DATABASE_URL": POOLED, "SCHEDULER_DB_POOLER": "transaction"})
    with pytest.raises(ConfigError) as caught:
        database_routes(config, POOLED)
    message = str(caught.value)
    assert "SCHEDULER_DB_POOLER=transaction" in message
    assert "SCHEDULER_DIRECT_DATABASE_URL" in message
    assert "LISTEN" in message
