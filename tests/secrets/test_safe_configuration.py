"""With DEBUG off the process refuses to start without real secrets; production settings pass
Django's deployment checklist."""

import os
import re
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from backoffice.safety import is_placeholder, require_secrets

from .conftest import PROJECT

SECRET_SETTINGS = (
    "SECRET_KEY",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_WEBHOOK_SECRET",
    "AUDIT_HMAC_KEY",
)


def start_django(**overrides):
    """Start a fresh process on the project's settings, with ``overrides`` in its environment."""
    env = {**os.environ, **overrides}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_example_values():
    """Variable name to value, for set lines and for commented-out ones (value: None)."""
    values = {}
    for line in (PROJECT / ".env.example").read_text().splitlines():
        match = ASSIGNMENT.match(line.strip())
        if match:
            commented, name, value = match.groups()
            values[name] = None if commented else value.strip()
    return values


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_process_refuses_to_start_without_a_secret_when_debug_is_off(name):
    result = start_django(DEBUG="0", **{name: ""})

    assert result.returncode != 0
    assert f"{name} is not set; it is required when DEBUG is off." in result.stderr


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_process_refuses_to_start_with_the_env_example_placeholder(name):
    result = start_django(DEBUG="0", **{name: env_example_values()[name]})

    assert result.returncode != 0
    assert f"{name} is set to a placeholder value" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", "abc"),
        ("SECRET_KEY", "a" * 60),
        ("SECRET_KEY_FALLBACKS", "old-and-short"),
        ("TELEGRAM_WEBHOOK_SECRET", "a"),
        ("TELEGRAM_WEBHOOK_SECRET", "a b!"),
        ("TELEGRAM_WEBHOOK_SECRET", "sixteen-and-a-space "),
        ("TELEGRAM_BOT_TOKEN", "abc"),
        ("TELEGRAM_BOT_TOKEN", "botname:" + "A" * 35),
        ("AUDIT_HMAC_KEY", "short-audit-key"),
        ("AUDIT_HMAC_KEY", "ab" * 20),
    ],
)
def test_process_refuses_to_start_with_a_weak_secret_when_debug_is_off(name, value):
    result = start_django(DEBUG="0", **{name: value})

    assert result.returncode != 0
    assert f"{name} is too weak" in result.stderr


def test_process_starts_with_development_defaults_when_debug_is_on():
    result = start_django(
        DEBUG="1",
        SECRET_KEY="",
        TELEGRAM_BOT_TOKEN="",
        TELEGRAM_WEBHOOK_SECRET="",
        AUDIT_HMAC_KEY="",
    )

    assert result.returncode == 0, result.stderr


def test_the_test_suite_itself_runs_with_debug_off(settings):
    assert os.environ["DEBUG"] in {"0", "false", "False"}
    assert settings.TELEGRAM_BOT_TOKEN
    assert settings.TELEGRAM_WEBHOOK_SECRET
    assert settings.AUDIT_HMAC_KEY


@pytest.mark.parametrize(
    "value",
    ["changeme", "CHANGEME", " change-me ", "dev-only-insecure-key", "django-insecure-abc123"],
)
def test_known_placeholders_are_recognised(value):
    assert is_placeholder(value)


def test_every_secret_in_env_example_is_a_placeholder():
    values = env_example_values()

    assert all(is_placeholder(values[name]) for name in SECRET_SETTINGS)


def test_first_missing_secret_is_named():
    with pytest.raises(ImproperlyConfigured, match=r"^B is not set"):
        require_secrets({"A": "a-real-value-1234", "B": "  ", "C": ""}, debug=False)


def test_real_values_pass():
    require_secrets({"A": "a-real-value-1234"}, debug=False)


def settings_read_from_the_environment():
    settings_source = (PROJECT / "backoffice" / "settings.py").read_text()
    return set(re.findall(r"""env(?:\.\w+)?\(\s*["']([A-Z][A-Z0-9_]*)["']""", settings_source))


def test_env_example_lists_every_setting_read_from_the_environment():
    missing = sorted(settings_read_from_the_environment() - env_example_values().keys())

    assert not missing, f"add to .env.example, each with a one-line comment: {missing}"


def test_readme_settings_table_lists_every_setting_read_from_the_environment():
    documented = set(
        re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", (PROJECT / "README.md").read_text(), re.M)
    )

    missing = sorted(settings_read_from_the_environment() - documented)

    assert not missing, f"add to the settings table in README.md: {missing}"


def test_deploy_check_passes_with_production_settings():
    result = subprocess.run(
        [str(PROJECT / "deploy" / "check-deploy")],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_https_only_turns_on_redirect_secure_cookies_and_hsts():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "s.SECURE_HSTS_SECONDS > 0, s.SECURE_HSTS_INCLUDE_SUBDOMAINS)"
    )
    outputs = {}
    for https_only in ("0", "1"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=PROJECT,
            env={**os.environ, "HTTPS_ONLY": https_only},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        outputs[https_only] = result.stdout.split()

    assert outputs["1"] == ["True"] * 5
    assert outputs["0"] == ["False"] * 5
