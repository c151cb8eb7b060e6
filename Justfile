# scheduler-core tasks. `just up` runs the system, `just test` runs the tests; each
# first creates or updates the virtual environment, so both work on a fresh clone.

set shell := ["bash", "-euo", "pipefail", "-c"]

python := env_var_or_default("PYTHON", "python3")
venv := ".venv"
bin := venv / "bin"

# List the recipes.
default:
    @just --list

# Create or update the virtual environment with the development tools (only when
# pyproject.toml changed since the last install).
venv: (install ".[dev]" ".installed")

# The same with the runtime dependencies only (what `just up` needs: a quicker first start).
venv-run: (install "." ".installed-run")

[private]
install spec stamp:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ ! -x {{bin}}/python ]; then {{python}} -m venv {{venv}}; fi
    if [ -f {{venv}}/.installed ] && [ ! pyproject.toml -nt {{venv}}/.installed ]; then exit 0; fi
    if [ ! -f {{venv}}/{{stamp}} ] || [ pyproject.toml -nt {{venv}}/{{stamp}} ]; then
        {{bin}}/python -m pip install --quiet --upgrade pip
        {{bin}}/python -m pip install --quiet -e "{{spec}}"
        touch {{venv}}/{{stamp}}
    fi

# Start everything: embedded PostgreSQL (when DATABASE_URL is unset), coordinator, workers.
up *ARGS: venv-run
    {{bin}}/scheduler up {{ARGS}}

# Run the whole test suite (unit and integration) against DATABASE_URL or an embedded
# PostgreSQL. The fault suite is left out: `just test-faults`.
test *ARGS: venv
    {{bin}}/python -m pytest {{ARGS}}

# The fault suite (tests/faults: workers killed, PostgreSQL restarted, the coordinator
# killed, a worker frozen past its lease, the primary failed over to its standby);
# a few minutes, figures in test-output/faults/.
test-faults *ARGS: venv
    SCHEDULER_FAULTS=1 {{bin}}/python -m pytest tests/faults -p no:randomly -s {{ARGS}}

# Unit tests only (no database).
test-unit *ARGS: venv
    {{bin}}/python -m pytest tests/unit {{ARGS}}

# ruff and mypy.
lint: venv
    {{bin}}/ruff check .
    {{bin}}/python -m mypy

# Apply pending migrations to DATABASE_URL (or the embedded PostgreSQL).
migrate: venv
    {{bin}}/scheduler migrate

# Run the coordinator alone.
coordinator *ARGS: venv
    {{bin}}/scheduler coordinator {{ARGS}}

# Run one worker against COORDINATOR_URL.
worker *ARGS: venv
    {{bin}}/scheduler worker {{ARGS}}

# Benchmarks against fresh databases, with the peers (bench/README.md). --quick: about 3 minutes.
bench *ARGS: venv
    {{bin}}/python bench/run.py {{ARGS}}

# The capacity model (bench/capacity.py, docs/operations.md): jobs/s, CPU, WAL, disk per job.
capacity *ARGS: venv
    {{bin}}/python bench/capacity.py {{ARGS}}
