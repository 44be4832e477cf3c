"""Refusing to run in production with missing, placeholder or weak secrets.

A process that starts with an empty ``SECRET_KEY``, the bot token copied from ``.env.example`` or a
webhook secret of one letter fails later, and in confusing ways (sessions that do not survive a
restart, a webhook anyone can call). Settings call ``require_secrets`` last, so such a process
stops at once and names the variable to fix.
"""

import re
from collections.abc import Callable, Mapping

from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

# Values that only ever appear in examples and development defaults, compared case-insensitively.
# Keep the secrets' values in .env.example among them.
PLACEHOLDERS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "dev-only-insecure-key",
        "placeholder",
        "secret",
        "todo",
        "xxx",
    }
)
# Django's startproject writes keys with this prefix; they are public by construction.
PLACEHOLDER_PREFIXES = ("django-insecure-",)


# Telegram accepts 1-256 of these characters as a webhook's secret_token; fewer than 16 can be
# guessed by anyone who can reach the webhook.
WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{16,256}")
# BotFather's tokens: the bot's numeric id, a colon, then 35 characters of the same alphabet.
BOT_TOKEN = re.compile(r"[0-9]+:[A-Za-z0-9_-]{30,}")


def is_placeholder(value: str) -> bool:
    value = value.strip().lower()
    return value in PLACEHOLDERS or value.startswith(PLACEHOLDER_PREFIXES)


def secret_key_weakness(value: str) -> str | None:
    """Django's own criteria, those of its ``security.W009`` deployment check."""
    if (
        len(value) < SECRET_KEY_MIN_LENGTH
        or len(set(value)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or value.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        return (
            f"it needs at least {SECRET_KEY_MIN_LENGTH} characters, "
            f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} of them different, and no "
            f"'{SECRET_KEY_INSECURE_PREFIX}' prefix"
        )
    return None


def webhook_secret_weakness(value: str) -> str | None:
    if not WEBHOOK_SECRET.fullmatch(value):
        return "it must be 16 to 256 characters, each a letter, a digit, '_' or '-'"
    return None


def bot_token_weakness(value: str) -> str | None:
    if not BOT_TOKEN.fullmatch(value):
        return "it must look like BotFather's tokens: <digits>:<30 or more of A-Za-z0-9_->"
    return None


# The audit chain's HMAC key: as many bytes as SHA-256's output, or the key is the weaker link.
AUDIT_HMAC_KEY_MIN_LENGTH = 32
AUDIT_HMAC_KEY_MIN_UNIQUE_CHARACTERS = 10


def audit_hmac_key_weakness(value: str) -> str | None:
    if (
        len(value) < AUDIT_HMAC_KEY_MIN_LENGTH
        or len(set(value)) < AUDIT_HMAC_KEY_MIN_UNIQUE_CHARACTERS
    ):
        return (
            f"it needs at least {AUDIT_HMAC_KEY_MIN_LENGTH} characters, "
            f"{AUDIT_HMAC_KEY_MIN_UNIQUE_CHARACTERS} of them different"
        )
    return None


WEAKNESS_CHECKS: Mapping[str, Callable[[str], str | None]] = {
    "SECRET_KEY": secret_key_weakness,
    "SECRET_KEY_FALLBACKS": secret_key_weakness,
    "TELEGRAM_BOT_TOKEN": bot_token_weakness,
    "TELEGRAM_WEBHOOK_SECRET": webhook_secret_weakness,
    "AUDIT_HMAC_KEY": audit_hmac_key_weakness,
}


def require_secrets(secrets: Mapping[str, str], *, debug: bool) -> None:
    """Raise ``ImproperlyConfigured`` for the first of ``secrets`` (name to value) not set for real:
    missing, a placeholder, or too weak by the checks in ``WEAKNESS_CHECKS``.

    With ``debug`` on nothing is required: a laptop runs with development defaults.
    """
    if debug:
        return
    for name, value in secrets.items():
        if not value or not value.strip():
            raise ImproperlyConfigured(f"{name} is not set; it is required when DEBUG is off.")
        if is_placeholder(value):
            raise ImproperlyConfigured(
                f"{name} is set to a placeholder value; set a real secret, "
                "it is required when DEBUG is off."
            )
        check = WEAKNESS_CHECKS.get(name)
        weakness = check(value) if check else None
        if weakness:
            raise ImproperlyConfigured(f"{name} is too weak: {weakness}.")


def require_fallback_keys(fallbacks: list[str], *, debug: bool) -> None:
    """Each previous key still signs valid sessions, so it must be as strong as the key."""
    for fallback in fallbacks:
        require_secrets({"SECRET_KEY_FALLBACKS": fallback}, debug=debug)
