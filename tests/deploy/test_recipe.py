"""The production recipe in deploy/ agrees with the code: compose services, images, commands and
environment against the settings table; the systemd units and the image run real commands. This
machine has no container engine, so nothing is built: the files are parsed and checked."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

PROJECT = Path(__file__).resolve().parents[2]
DEPLOY = PROJECT / "deploy"
PROCESSES = {"migrate", "web", "worker", "runner", "poller", "fake-telegram"}
SECRETS = {"SECRET_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "AUDIT_HMAC_KEY"}


def settings_table():
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", (PROJECT / "README.md").read_text(), re.M))


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def manage_py_commands(command):
    """The manage.py subcommands a command line runs ('sh -c "a && b"' included)."""
    words = shlex.split(" ".join(command))
    return [words[i + 1] for i, word in enumerate(words) if word == "manage.py"]


def test_compose_runs_every_process_and_its_services(compose):
    assert set(compose["services"]) == PROCESSES | {"db", "redis"}
    assert compose["services"]["db"]["image"].startswith("postgres:")
    assert compose["services"]["redis"]["image"].startswith("redis:")
    assert compose["services"]["fake-telegram"]["profiles"] == ["staging"]


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_every_process_runs_the_one_image_and_a_real_command(compose, name):
    service = compose["services"][name]
    command = service["command"]

    assert service["image"] == "claimdesk:latest"
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    if name == "web":
        assert command[:2] == ["gunicorn", "backoffice.wsgi"]
    else:
        assert set(manage_py_commands(command)) <= set(get_commands())
        assert manage_py_commands(command)


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_every_variable_a_process_gets_is_in_the_settings_table(compose, name):
    environment = compose["services"][name]["environment"]

    assert not set(environment) - settings_table()
    for secret in SECRETS:
        assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", environment[secret]), (
            f"{secret} must come from the environment, and compose must refuse to start without it"
        )


def test_the_image_is_slim_and_runs_as_a_user_without_privileges():
    dockerfile = (DEPLOY / "Dockerfile").read_text()

    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    [user] = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user not in {"root", "0"}
    assert "collectstatic" in dockerfile


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=str)
def test_systemd_units_run_real_commands_as_the_claimdesk_user(unit):
    text = unit.read_text()
    commands = re.findall(r"^ExecStart=(.+)$", text, re.M)

    assert "User=claimdesk" in text
    assert commands
    for command in commands:
        words = shlex.split(command)
        assert words[0].startswith("/srv/claimdesk/app/.venv/bin/")
        if "manage.py" in words:
            assert set(manage_py_commands(words)) <= set(get_commands())


def test_nginx_proxies_to_where_the_web_unit_listens():
    unit = (DEPLOY / "systemd" / "claimdesk-web.service").read_text()
    site = (DEPLOY / "nginx" / "claimdesk.conf").read_text()
    [bind] = re.findall(r"--bind (\S+)", unit)

    assert f"server {bind} " in site
    assert "location = /telegram/webhook/" in site
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in site


def test_the_gunicorn_configuration_loads():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--check-config",
            "--config",
            "deploy/gunicorn.conf.py",
            "backoffice.wsgi",
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_nginx_lets_only_listed_addresses_reach_the_metrics():
    site = (DEPLOY / "nginx" / "claimdesk.conf").read_text()
    metrics = site[site.index("location = /metrics {") :]
    rules = [line.strip() for line in metrics[: metrics.index("proxy_pass")].splitlines()]

    assert "allow 127.0.0.1;" in rules
    assert rules[-2:] == ["deny all;", ""]
