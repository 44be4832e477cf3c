"""Keeping secrets out of logs, stored errors, audit details and screens.

The Telegram bot token sits inside every Bot API URL (``/bot<token>/sendMessage``), so any text that
may carry a URL or an exception message goes through ``redact`` before it is logged or stored.
``RedactSecretsFilter`` does the same for every log record, at the handlers configured in
``settings.LOGGING``, so no logger (Django's, django-q's, urllib3's or ours) can write a secret.
"""

import logging
import re

from django.conf import settings
from django.views.debug import SafeExceptionReporterFilter

REDACTED = "[redacted]"

# Telegram bot tokens look like 123456789:AAH...; also hide whatever follows /bot in a URL path.
BOT_TOKEN_PATTERN = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{20,}")
BOT_URL_PATTERN = re.compile(r"/bot[^/\s]+/")
# A lease token (claims.lease_tokens), wherever it appears.
LEASE_TOKEN_PATTERN = re.compile(r"\bclt_[A-Za-z0-9_-]{20,}")
# The password between ':' and '@' in a URL's user info, as in DATABASE_URL or REDIS_URL.
URL_PASSWORD_PATTERN = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/\s@]*:)[^@\s/]+@", re.IGNORECASE)
# An API token after its scheme, as in an Authorization header: "Token 3f9a...", "Bearer ey...".
AUTH_SCHEME_PATTERN = re.compile(r"\b((?:Token|Bearer|Basic)\s+)[A-Za-z0-9._~+/-]{16,}=*")
# A value after a key named like a secret, in a query string, a header, JSON or a repr:
# "secret_token=...", "X-Telegram-Bot-Api-Secret-Token: ...", '"password": "..."'.
SECRET_FIELD_PATTERN = re.compile(
    r"""(\b[\w-]*(?:token|secret|password|passwd|api[-_]?key|sessionid)["']?\s*[:=]\s*["']?)"""
    # The value, unless already redacted, so that redacting twice changes nothing.
    r"""(?!\[redacted\])[^\s&"',;)}\]]+""",
    re.IGNORECASE,
)
# Configured values shorter than this are left alone: a development webhook secret such as "x"
# would otherwise blank out every "x" in a log line.
MIN_SECRET_LENGTH = 8

_SECRET_SETTINGS = (
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_WEBHOOK_SECRET",
    "SECRET_KEY",
    "METRICS_BEARER_TOKEN",
)


def _configured_secrets():
    values = [getattr(settings, name, "") for name in _SECRET_SETTINGS]
    values.extend(getattr(settings, "SECRET_KEY_FALLBACKS", ()))
    # Longest first, so a secret containing another one is replaced whole.
    return sorted(
        {value for value in values if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH},
        key=len,
        reverse=True,
    )


def redact(text):
    """``text`` with every known secret and anything shaped like a token or password replaced."""
    if not text:
        return text
    text = str(text)
    for secret in _configured_secrets():
        text = text.replace(secret, REDACTED)
    text = BOT_URL_PATTERN.sub(f"/bot{REDACTED}/", text)
    text = BOT_TOKEN_PATTERN.sub(REDACTED, text)
    text = LEASE_TOKEN_PATTERN.sub(REDACTED, text)
    text = URL_PASSWORD_PATTERN.sub(rf"\g<1>{REDACTED}@", text)
    text = AUTH_SCHEME_PATTERN.sub(rf"\g<1>{REDACTED}", text)
    return SECRET_FIELD_PATTERN.sub(rf"\g<1>{REDACTED}", text)


class RedactSecretsFilter(logging.Filter):
    """Rewrite a log record so that its message, traceback and stack carry no secret.

    Attached to handlers rather than loggers: a handler sees every record that reaches it,
    including those propagated from third-party loggers, while a logger's filter only sees records
    logged on that very logger. The record is rewritten in place, so every handler after this one
    gets the redacted text too; redacting twice changes nothing.
    """

    _exception_formatter = logging.Formatter()

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:
            # A malformed logging call must neither break its caller nor reach logging's error
            # report, which prints the raw arguments.
            message = f"{record.msg} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exception_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class DebugSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    """Hide secrets on error pages with DEBUG on too.

    Django's filter steps aside while DEBUG is on, so a development error page would list the
    webhook secret among a frame's local variables, and development runs with secrets copied to
    other machines. This one always honours ``sensitive_variables`` and
    ``sensitive_post_parameters`` and hides settings named like secrets.
    """

    def is_active(self, request):
        return True
