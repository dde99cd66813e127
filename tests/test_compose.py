"""docker-compose.yml is the production profile; no Docker engine runs here, so it is
checked structurally and, when a compose CLI exists, by `docker compose config`."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_has_a_health_check_or_is_one_shot():
    services = COMPOSE["services"]
    for required in ("postgres", "redis", "web", "worker", "beat", "syslog"):
        assert required in services, required
    for name, service in services.items():
        if service.get("restart") == "no":
            continue  # one-shot jobs such as migrate
        assert "healthcheck" in service, f"{name} has no healthcheck"


def test_web_workers_are_recycled_in_compose_and_the_image():
    """Web RSS still creeps after warm-up under sustained load (docs/performance.md), so
    every way of running the web service replaces its workers after a bounded number of
    requests, with jitter so that they do not restart together."""
    image_cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    assert image_cmd, "Dockerfile has no exec-form CMD"
    for where, argv in (
        ("docker-compose web", COMPOSE["services"]["web"]["command"]),
        ("Dockerfile CMD", yaml.safe_load(image_cmd.group(1))),
    ):
        assert argv[0] == "gunicorn", where
        opts = dict(itertools.pairwise(argv))
        assert 0 < int(opts.get("--max-requests", 0)) <= 100_000, where
        assert 0 < int(opts.get("--max-requests-jitter", 0)) < int(opts["--max-requests"]), where


def test_dependencies_name_existing_services():
    services = COMPOSE["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_env_example_lists_every_variable_settings_read():
    settings_text = (ROOT / "webapp" / "settings.py").read_text()
    read = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', settings_text))
    read -= {"TELLTALE_TESTING", "TELLTALE_TEST_DATABASE_URL", "TELLTALE_TEST_BROKER_URL"}
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.M))
    assert read - listed == set(), f"missing from .env.example: {sorted(read - listed)}"


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_config_validates(tmp_path):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env_file = ROOT / ".env"
    created = not env_file.exists()
    if created:
        env_file.write_text((ROOT / ".env.example").read_text())
    try:
        result = subprocess.run(
            [*cli, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    finally:
        if created:
            env_file.unlink()
    assert result.returncode == 0, result.stderr
