"""Django's deployment checklist with production settings."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(tmp_path, **env_changes) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TELLTALE_", "DATABASE_URL", "DEBUG", "DJANGO_ALLOW_ASYNC"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "webapp.settings",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "ALLOWED_HOSTS": "telltale.example",
            **env_changes,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_https_settings(tmp_path):
    result = _check(
        tmp_path,
        SECURE_SSL_REDIRECT="true",
        SECURE_HSTS_SECONDS="31536000",
        SECURE_HSTS_INCLUDE_SUBDOMAINS="true",
        SECURE_HSTS_PRELOAD="true",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_defaults_only_leave_the_https_switches_to_the_operator(tmp_path):
    # TLS often ends at a proxy, so HSTS and the HTTPS redirect are opt-in; nothing else
    # on Django's checklist may be open by default.
    result = _check(tmp_path)
    found = {
        line.split(")")[0].split("(")[-1]
        for line in result.stderr.splitlines()
        if "(security." in line
    }
    assert found == {"security.W004", "security.W008"}, result.stderr
