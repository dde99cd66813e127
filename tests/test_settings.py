"""Settings come only from the environment; bad values stop start-up naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from webapp.env import check_broker_url, env_bool, env_choice, env_int, env_list, parse_database_url

ROOT = Path(__file__).resolve().parent.parent


def test_env_bool_reads_common_words(monkeypatch):
    for raw, expected in [("1", True), ("TRUE", True), ("yes", True), ("0", False), ("off", False)]:
        monkeypatch.setenv("X_FLAG", raw)
        assert env_bool("X_FLAG") is expected
    monkeypatch.delenv("X_FLAG")
    assert env_bool("X_FLAG", True) is True


def test_env_bool_rejects_other_words(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env_bool("X_FLAG")


def test_env_int_names_the_variable(monkeypatch):
    monkeypatch.setenv("X_PORT", "eighty")
    with pytest.raises(ImproperlyConfigured, match="X_PORT='eighty' is not an integer"):
        env_int("X_PORT", 1)
    monkeypatch.setenv("X_PORT", "0")
    with pytest.raises(ImproperlyConfigured, match="X_PORT=0 must be at least 1"):
        env_int("X_PORT", 1, minimum=1)
    monkeypatch.setenv("X_PORT", " 8080 ")
    assert env_int("X_PORT", 1) == 8080


def test_env_list_and_choice(monkeypatch):
    monkeypatch.setenv("X_HOSTS", "a.example, b.example,,")
    assert env_list("X_HOSTS", []) == ["a.example", "b.example"]
    monkeypatch.setenv("X_LEVEL", "warning")
    assert env_choice("X_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING")) == "WARNING"
    monkeypatch.setenv("X_LEVEL", "loud")
    with pytest.raises(ImproperlyConfigured, match="X_LEVEL"):
        env_choice("X_LEVEL", "INFO", ("DEBUG", "INFO"))


def test_database_urls():
    sqlite = parse_database_url("DATABASE_URL", "sqlite:///var/x.sqlite3")
    assert sqlite["ENGINE"].endswith("sqlite3") and sqlite["NAME"] == "var/x.sqlite3"
    absolute = parse_database_url("DATABASE_URL", "sqlite:////tmp/x.sqlite3")
    assert absolute["NAME"] == "/tmp/x.sqlite3"
    pg = parse_database_url(
        "DATABASE_URL", "postgres://u:p%40ss@db.example:6543/telltale?sslmode=require"
    )
    assert pg["ENGINE"].endswith("postgresql")
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "u",
        "p@ss",
        "db.example",
        "6543",
        "telltale",
    )
    assert pg["OPTIONS"] == {"sslmode": "require"}


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://u@h/db", "unsupported scheme 'mysql'"),
        ("postgres://u@h:notaport/db", "port is not a number"),
        ("postgres://u@h:5432/", "needs a database name"),
        ("sqlite://", "needs a file path"),
    ],
)
def test_bad_database_urls(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        parse_database_url("DATABASE_URL", url)


def test_broker_urls():
    assert check_broker_url("B", "") == ""
    assert check_broker_url("B", "redis://127.0.0.1:6379/0").startswith("redis://")
    with pytest.raises(ImproperlyConfigured, match="B='kafka://x'"):
        check_broker_url("B", "kafka://x")


def _start(env_changes: dict[str, str]) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TELLTALE_TEST", "DATABASE_URL"))
    }
    env.pop("SECRET_KEY", None)
    env.update(env_changes)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "webapp.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_start_refuses_without_secret_key(tmp_path):
    result = _start({"DEBUG": "false", "SECRET_KEY_FILE": str(tmp_path / "missing")})
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_malformed_value_stops_start_up_naming_the_variable(tmp_path):
    result = _start({"SECRET_KEY": "x" * 50, "EMAIL_PORT": "twenty-five"})
    assert result.returncode != 0
    assert "EMAIL_PORT='twenty-five' is not an integer" in result.stderr


def test_good_production_settings_start(tmp_path):
    result = _start(
        {
            "SECRET_KEY": "k" * 50,
            "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
            "ALLOWED_HOSTS": "telltale.example",
        }
    )
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout
