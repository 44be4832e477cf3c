"""Tokens and passwords never reach a log line, whichever logger writes it."""

import logging
import os
import subprocess
import sys

import pytest

from backoffice.redaction import REDACTED, RedactSecretsFilter, redact

from .conftest import PROJECT, fake_bot_token

LOGGING_CHILD = """
import logging
import django

django.setup()
from django.conf import settings
from django_q.conf import logger as queue_logger

token = settings.TELEGRAM_BOT_TOKEN
other_token = {other_token!r}
url = f"https://api.telegram.org/bot{{token}}/sendMessage"

logging.getLogger("urllib3.connectionpool").warning("Retrying (1/3) after error: %s", url)
logging.getLogger("django.request").error(
    "Bad webhook body: %r", {{"secret_token": settings.TELEGRAM_WEBHOOK_SECRET}}
)
queue_logger.info("Task args: %s", [other_token])
try:
    raise RuntimeError(f"POST {{url}} failed; key {{settings.SECRET_KEY}}")
except RuntimeError:
    logging.getLogger("telegram_bridge.outbox").exception("Delivery failed")
print("done")
"""


def test_configured_logging_redacts_tokens_in_urls_arguments_and_tracebacks(settings):
    other_token = fake_bot_token()
    result = subprocess.run(
        [sys.executable, "-c", LOGGING_CHILD.format(other_token=other_token)],
        cwd=PROJECT,
        env={**os.environ, "LOG_LEVEL": "INFO"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    log = result.stderr
    for secret in (
        settings.TELEGRAM_BOT_TOKEN,
        settings.TELEGRAM_WEBHOOK_SECRET,
        settings.SECRET_KEY,
        other_token,
    ):
        assert secret not in log
    assert f"Retrying (1/3) after error: https://api.telegram.org/bot{REDACTED}/sendMessage" in log
    assert f"'secret_token': '{REDACTED}'" in log
    assert f"Task args: ['{REDACTED}']" in log
    assert "Traceback (most recent call last)" in log
    assert f"RuntimeError: POST https://api.telegram.org/bot{REDACTED}/sendMessage failed" in log


def test_every_configured_handler_redacts(settings):
    handlers = settings.LOGGING["handlers"]

    assert handlers
    for handler in handlers.values():
        assert "redact_secrets" in handler["filters"]
    assert settings.LOGGING["filters"]["redact_secrets"]["()"] == (
        "backoffice.redaction.RedactSecretsFilter"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET https://api.telegram.org/bot{token}/getUpdates?offset=5",
            f"GET https://api.telegram.org/bot{REDACTED}/getUpdates?offset=5",
        ),
        ("token is {token}.", f"token is {REDACTED}."),
        (
            "postgres://claimdesk:pa55-word@db:5432/claimdesk",  # pragma: allowlist secret
            f"postgres://claimdesk:{REDACTED}@db:5432/claimdesk",
        ),
        ("redis://:pa55-word@cache:6379/0", f"redis://:{REDACTED}@cache:6379/0"),
        (
            "Authorization: Token 0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            f"Authorization: Token {REDACTED}",
        ),
        ("POST /hook?secret_token=abc123&x=1", f"POST /hook?secret_token={REDACTED}&x=1"),
        (
            "X-Telegram-Bot-Api-Secret-Token: abc123",
            f"X-Telegram-Bot-Api-Secret-Token: {REDACTED}",
        ),
        (
            '{"password": "hunter2", "user": "ann"}',  # pragma: allowlist secret
            f'{{"password": "{REDACTED}", "user": "ann"}}',
        ),
        ("claim 42 granted to agent-7", "claim 42 granted to agent-7"),
    ],
)
def test_redact_hides_secrets_and_keeps_the_rest(text, expected):
    assert redact(text.replace("{token}", fake_bot_token())) == expected


def test_redact_hides_configured_secrets_and_previous_keys(settings):
    settings.TELEGRAM_WEBHOOK_SECRET = "plain-words-webhook"  # pragma: allowlist secret
    settings.SECRET_KEY_FALLBACKS = ["an-older-signing-key"]

    assert redact("got plain-words-webhook, an-older-signing-key") == f"got {REDACTED}, {REDACTED}"


def test_redact_leaves_very_short_configured_values_alone(settings):
    settings.TELEGRAM_WEBHOOK_SECRET = "x"

    assert redact("exit 0") == "exit 0"


def test_redact_twice_changes_nothing():
    once = redact(f"https://api.telegram.org/bot{fake_bot_token()}/getMe password=abc")

    assert redact(once) == once


def make_record(msg, args=(), exc_info=None, stack_info=None):
    return logging.LogRecord(
        "test", logging.ERROR, __file__, 1, msg, args, exc_info, sinfo=stack_info
    )


def test_filter_redacts_message_arguments_traceback_and_stack():
    token = fake_bot_token()
    try:
        raise ValueError(f"bad token {token}")
    except ValueError:
        exc_info = sys.exc_info()
    record = make_record("sending %s", (token,), exc_info=exc_info, stack_info=f"at {token}")

    assert RedactSecretsFilter().filter(record) is True
    formatted = logging.Formatter().format(record)

    assert token not in formatted
    assert f"sending {REDACTED}" in formatted
    assert f"ValueError: bad token {REDACTED}" in formatted
    assert f"at {REDACTED}" in formatted


def test_filter_survives_a_malformed_logging_call():
    token = fake_bot_token()
    record = make_record("two values %s %s", (token,))

    assert RedactSecretsFilter().filter(record) is True
    assert token not in record.getMessage()
