"""The Telegram Bot API client: one HTTP session, its retry policy and error mapping.

Every Bot API call is ``POST {base_url}/bot{token}/{method}`` with a JSON body. Connection errors
and 5xx answers are retried inside urllib3 with exponential backoff and jitter; 429 is not retried
here (the outbox pauses the chat through ``telegram_bridge.ratelimit``), and 4xx answers that no
retry can fix raise ``PermanentError`` at once.

A read timeout is ambiguous: Telegram may have acted before the answer was lost, and the Bot API
has no idempotency key. Methods that are safe to repeat are retried on read errors; sending methods
are not, they raise ``AmbiguousTimeout`` and the outbox decides (docs/telegram-delivery.md).

The token sits inside every URL, so every text that leaves this module (exception messages, log
records of requests and urllib3) goes through ``backoffice.redaction.redact`` first.
"""

import logging
import os
import threading
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ReadTimeoutError
from urllib3.util.retry import Retry

from backoffice.redaction import RedactSecretsFilter, redact

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({500, 502, 503, 504})
PERMANENT_STATUSES = frozenset({400, 401, 403, 404})

# Methods whose repetition would show the user a second message. ``sendChatAction`` only shows
# "typing…" again, so it is safe to repeat.
_NON_IDEMPOTENT_PREFIXES = ("send", "forward", "copy")
_IDEMPOTENT_SENDS = frozenset({"sendchataction"})


def is_idempotent(method: str) -> bool:
    """Whether calling ``method`` twice has the same effect as calling it once."""
    name = method.lower()
    return name in _IDEMPOTENT_SENDS or not name.startswith(_NON_IDEMPOTENT_PREFIXES)


class BotApiError(Exception):
    """A Bot API call failed; ``description`` never contains the token."""

    permanent = False

    def __init__(
        self,
        method: str,
        description: str,
        *,
        status_code: int | None = None,
        error_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.description = redact(description) or ""
        self.status_code = status_code
        self.error_code = error_code
        self.retry_after = retry_after
        super().__init__(f"{method}: {self.description}")


class RetryAfter(BotApiError):
    """429 flood control: wait ``retry_after`` seconds before calling again.

    Telegram does not say which limit was hit. A call addressed to a chat (``chat_id`` set) is
    treated as that chat's limit, so only that chat is paused; any other call pauses every send.
    """

    def __init__(
        self, method: str, description: str, *, chat_id: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(method, description, **kwargs)
        self.chat_id = chat_id

    @property
    def chat_scoped(self) -> bool:
        return self.chat_id is not None


class TransientError(BotApiError):
    """5xx answers after the client's own retries, connection errors and resets."""


class AmbiguousTimeout(TransientError):
    """No answer within the read timeout: Telegram may or may not have acted."""


class PermanentError(BotApiError):
    """400, 401, 403 or 404: the same call will fail again, so retrying makes no sense."""

    permanent = True


# The HTTP libraries put request URLs (and so the token) in their records. The handlers in
# settings.LOGGING redact every record they write; these loggers redact at the source too, so a
# handler configured elsewhere (a test's capture, a library's own) never sees the token either.
for _name in ("urllib3", "urllib3.connectionpool", "urllib3.util.retry", "requests"):
    logging.getLogger(_name).addFilter(RedactSecretsFilter())


class BotClient:
    """A Bot API client; defaults come from the ``TELEGRAM_*`` settings."""

    def __init__(
        self,
        *,
        token: str | None = None,
        base_url: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> None:
        self.token = settings.TELEGRAM_BOT_TOKEN if token is None else token
        base_url = settings.TELEGRAM_API_BASE_URL if base_url is None else base_url
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = (
            settings.TELEGRAM_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout
        )
        self.read_timeout = settings.TELEGRAM_READ_TIMEOUT if read_timeout is None else read_timeout
        self._sessions = {
            True: self._session(read_retries=settings.TELEGRAM_RETRY_TOTAL),
            False: self._session(read_retries=False),
        }

    def _session(self, *, read_retries: int | bool) -> requests.Session:
        """A session whose adapter retries connection errors and 5xx answers.

        ``read_retries=False`` makes urllib3 raise a read error at once instead of sending the
        request again, which is what non-idempotent methods need.
        """
        total = settings.TELEGRAM_RETRY_TOTAL
        retry = Retry(
            total=total,
            connect=total,
            read=read_retries,
            status=total,
            other=0,
            redirect=0,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST"}),
            backoff_factor=settings.TELEGRAM_RETRY_BACKOFF,
            backoff_jitter=settings.TELEGRAM_RETRY_BACKOFF,
            backoff_max=settings.TELEGRAM_RETRY_BACKOFF_MAX,
            raise_on_status=False,
            raise_on_redirect=False,
            # A 503 with Retry-After must not make a worker sleep for as long as the server asks;
            # 429 is not in status_forcelist, so urllib3 hands it back to us.
            respect_retry_after_header=False,
        )
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=10)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def call(
        self, method: str, payload: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """POST ``payload`` as JSON to ``method``; return its ``result`` or raise ``BotApiError``.

        ``timeout`` replaces the read timeout for this call (a long poll needs its own).
        """
        if not self.token:
            raise PermanentError(method, "TELEGRAM_BOT_TOKEN is not set")
        payload = payload or {}
        url = f"{self.base_url}/bot{self.token}/{method}"
        read_timeout = self.read_timeout if timeout is None else timeout
        session = self._sessions[is_idempotent(method)]
        try:
            response = session.post(url, json=payload, timeout=(self.connect_timeout, read_timeout))
        except requests.RequestException as exc:
            error = _transport_error(method, exc)
        else:
            return _result(method, payload, response)
        # Raised outside the handler, so the requests exception (its message holds the URL, and
        # so the token) is not attached as __context__ for a traceback or error tracker to show.
        logger.info("Bot API %s failed: %s", method, error.description)
        raise error

    def close(self) -> None:
        for session in self._sessions.values():
            session.close()


def _transport_error(method: str, exc: requests.RequestException) -> TransientError:
    """Our error for a request that got no HTTP answer (after urllib3's retries)."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    if isinstance(exc, requests.ReadTimeout) or isinstance(reason, ReadTimeoutError):
        return AmbiguousTimeout(method, f"no answer within the read timeout: {exc}")
    if isinstance(exc, requests.ConnectTimeout):
        return TransientError(method, f"could not connect in time: {exc}")
    return TransientError(method, f"connection failed: {exc}")


def _result(method: str, payload: dict[str, Any], response: requests.Response) -> Any:
    """The ``result`` of an ``ok`` answer; otherwise raise the matching ``BotApiError``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # Gateways in front of Telegram answer 502/504 with an HTML page.
        body = {"ok": False}
    if body.get("ok") and response.status_code == 200:
        return body.get("result")
    error = _api_error(method, payload, response, body)
    logger.info("Bot API %s failed: %s", method, error.description)
    raise error


def _api_error(
    method: str, payload: dict[str, Any], response: requests.Response, body: dict[str, Any]
) -> BotApiError:
    status = response.status_code
    error_code = body.get("error_code")
    code = error_code or status
    description = body.get("description") or f"HTTP {status} {response.reason}"
    kwargs = {"status_code": status, "error_code": error_code}
    if code == 429:
        return RetryAfter(
            method,
            description,
            retry_after=_retry_after(body, response),
            chat_id=payload.get("chat_id"),
            **kwargs,
        )
    if code in PERMANENT_STATUSES:
        return PermanentError(method, description, **kwargs)
    if code >= 500 or status >= 500:
        return TransientError(method, description, **kwargs)
    return BotApiError(method, description, **kwargs)


def _retry_after(body: dict[str, Any], response: requests.Response) -> float | None:
    parameters = body.get("parameters") or {}
    for value in (parameters.get("retry_after"), response.headers.get("Retry-After")):
        if value is None:
            continue
        try:
            return max(float(value), 0.0)
        except (TypeError, ValueError):
            continue
    return None


_local = threading.local()


def get_client() -> BotClient:
    """This thread's client, rebuilt when the settings it was built from change.

    Keyed on the process id too, so a worker forked from a parent never shares its connections.
    """
    key = (
        os.getpid(),
        settings.TELEGRAM_BOT_TOKEN,
        settings.TELEGRAM_API_BASE_URL,
        settings.TELEGRAM_CONNECT_TIMEOUT,
        settings.TELEGRAM_READ_TIMEOUT,
        settings.TELEGRAM_RETRY_TOTAL,
        settings.TELEGRAM_RETRY_BACKOFF,
        settings.TELEGRAM_RETRY_BACKOFF_MAX,
    )
    if getattr(_local, "key", None) != key:
        old = getattr(_local, "client", None)
        if old is not None:
            old.close()
        _local.client, _local.key = BotClient(), key
    return _local.client
