"""`make demo`'s bootstrap on a throwaway SQLite database: migrate, admin once, idempotent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path, *args, extra_env=None):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELLTALE_", "DATABASE_URL", "CELERY_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "SECRET_KEY": "s" * 50,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
            "TELLTALE_VAR_DIR": str(tmp_path / "var"),
        }
    )
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_bootstrap_creates_admin_once_and_is_idempotent(tmp_path):
    # One hour of history instead of six: the same code path in a sixth of the time.
    short = {"TELLTALE_DEMO_HISTORY_HOURS": "1"}
    first = _run(tmp_path, "demo", "--bootstrap-only", extra_env=short)
    assert first.returncode == 0, first.stderr
    hours = float(re.search(r"writing the last ([\d.]+) h", first.stdout).group(1))
    # From the hour boundary at or before an hour ago; printed to one decimal, so a run
    # in the last three minutes of an hour prints 2.0.
    assert 1.0 <= hours <= 2.0
    match = re.search(r"created user 'admin' with password: (\S+)", first.stdout)
    assert match, first.stdout
    password = match.group(1)
    assert "[1/5]" in first.stdout and "[5/5]" in first.stdout
    assert "labeled cases" in first.stdout  # the first run writes simulated history

    second = _run(tmp_path, "demo", "--bootstrap-only", extra_env=short)
    assert second.returncode == 0, second.stderr
    assert "exists; its password is unchanged" in second.stdout
    assert password not in second.stdout

    check = _run(
        tmp_path,
        "shell",
        "-c",
        "from django.contrib.auth import authenticate; from webapp.core.roles import role_of;"
        f"u = authenticate(username='admin', password={password!r}); print('role', role_of(u))",
    )
    assert "role admin" in check.stdout, check.stderr


def test_bootstrap_takes_the_admin_password_from_the_environment(tmp_path):
    result = _run(
        tmp_path,
        "demo",
        "--bootstrap-only",
        "--no-feed",
        extra_env={"TELLTALE_ADMIN_PASSWORD": "from-env-pass-123"},
    )
    assert result.returncode == 0, result.stderr
    assert "from-env-pass-123" not in result.stdout
    assert "(from TELLTALE_ADMIN_PASSWORD)" in result.stdout
