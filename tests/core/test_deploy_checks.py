"""Django's deployment checklist with production settings."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path, **env_changes) -> dict:
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
    return env


def _manage(tmp_path, *args, **env_changes) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=_env(tmp_path, **env_changes),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _check(tmp_path, **env_changes) -> subprocess.CompletedProcess:
    return _manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", **env_changes)


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


# Runs inside the production settings: the cookies a browser really receives.
COOKIES = """
from django.conf import settings
from django.test import Client
response = Client(HTTP_HOST="telltale.example").get("/login/")
cookie = response.cookies["csrftoken"]
print("status", response.status_code)
print("csrf-cookie-secure", bool(cookie["secure"]))
print("csrf-cookie-samesite", cookie["samesite"])
for name in ("DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY"):
    print(name, getattr(settings, name))
print("frame", response["X-Frame-Options"], response["X-Content-Type-Options"])
"""


def test_production_cookies_are_secure_and_http_only(tmp_path):
    result = _manage(tmp_path, "shell", "--no-imports", "-c", COOKIES)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert lines == {
        "status": "200",
        "csrf-cookie-secure": "True",
        "csrf-cookie-samesite": "Lax",
        "DEBUG": "False",
        "SESSION_COOKIE_SECURE": "True",
        "CSRF_COOKIE_SECURE": "True",
        "SESSION_COOKIE_HTTPONLY": "True",
        "frame": "DENY nosniff",
    }, result.stdout


def test_turning_secure_cookies_off_is_reported(tmp_path):
    # The guard above is only worth something if check --deploy notices the opposite.
    result = _check(tmp_path, SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="false")
    assert result.returncode != 0
    assert "security.W012" in result.stderr and "security.W016" in result.stderr
