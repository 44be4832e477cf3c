"""Keeping secrets out of logs, stored errors, audit details and screens.

The Telegram bot token sits inside every Bot API URL (``/bot<token>/sendMessage``), so any text that
may carry a URL or an exception message goes through ``redact`` before it is logged or stored.
"""

import re

from django.conf import settings

REDACTED = "[redacted]"

# Telegram bot tokens look like 123456789:AAH...; also hide whatever follows /bot in a URL path.
BOT_TOKEN_PATTERN = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{20,}")
BOT_URL_PATTERN = re.compile(r"/bot[^/\s]+/")


def _configured_secrets():
    names = ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "SECRET_KEY")
    return [value for value in (getattr(settings, name, "") for name in names) if value]


def redact(text):
    """``text`` with every known secret and anything shaped like a bot token replaced."""
    if not text:
        return text
    text = str(text)
    for secret in _configured_secrets():
        text = text.replace(secret, REDACTED)
    text = BOT_URL_PATTERN.sub(f"/bot{REDACTED}/", text)
    return BOT_TOKEN_PATTERN.sub(REDACTED, text)
