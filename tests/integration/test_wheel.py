"""The wheel: built with ``python -m build``, installed into a fresh virtual environment
outside the checkout next to the PyPI package ``schema``; both import, ``scheduler
--help`` runs, and ``scheduler migrate`` applies the migrations shipped in the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(argv, cwd=cwd, env={**clean, **env}, text=True, capture_output=True,
                          timeout=600, check=False)


def test_the_wheel_installs_and_migrates_from_a_fresh_venv(
    tmp_path: Path, empty_database: str
) -> None:
    dist = tmp_path / "dist"
    built = run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                cwd=tmp_path)
    assert 0 == built.returncode, built.stderr[-3000:]
    (wheel,) = dist.glob("scheduler_core-*.whl")

    venv = tmp_path / "venv"
    assert 0 == run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path).returncode
    py = venv / "bin" / "python"
    installed = run([str(py), "-m", "pip", "install", "--quiet", str(wheel), "schema"],
                    cwd=tmp_path)
    assert 0 == installed.returncode, installed.stderr[-3000:]

    probe = run([str(py), "-c",
                 "import schema, scheduler_core.schema.wire, scheduler_core.handlers\n"
                 "from importlib import resources\n"
                 "print(schema.Schema(int).validate(1), "
                 "resources.files('scheduler_core.web').joinpath('static/app.js').is_file(), "
                 f"scheduler_core.schema.wire.__file__.startswith({str(venv)!r}))"],
                cwd=tmp_path)
    assert ("1 True True", "") == (probe.stdout.strip(), probe.stderr.strip())

    helped = run([str(venv / "bin" / "scheduler"), "--help"], cwd=tmp_path)
    assert 0 == helped.returncode and "migrate" in helped.stdout, helped.stderr

    migrated = run([str(venv / "bin" / "scheduler"), "migrate"], cwd=tmp_path,
                   DATABASE_URL=empty_database)
    assert 0 == migrated.returncode, migrated.stderr[-3000:]
    with psycopg.connect(empty_database) as conn:
        row = conn.execute("SELECT to_regclass('jobs') IS NOT NULL").fetchone()
    assert (True,) == row
