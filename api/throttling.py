"""Request rate limits per API token, counted where every worker sees the same count."""

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from backoffice.redis_client import run_script

PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def parse_rate(rate):
    """``"1000/min"`` → ``(1000, 60)``; the setting is checked on every request, so tests can
    change it."""
    count, _, period = rate.partition("/")
    try:
        return int(count), PERIODS[period.strip().lower()]
    except (ValueError, KeyError):
        raise ValueError(f"API_THROTTLE_RATE must look like '1000/min', not {rate!r}") from None


class TokenRateThrottle(BaseThrottle):
    """At most ``API_THROTTLE_RATE`` requests per token (per user for a browser session, per
    client address when anonymous).

    A fixed window counter: one atomic increment per request, so the cost stays flat however
    generous the rate is, and every gunicorn worker sees the same count.
    """

    def allow_request(self, request, view):
        limit, period = parse_rate(settings.API_THROTTLE_RATE)
        now = time.time()
        window = int(now // period)
        self.retry_after = period * (window + 1) - now
        token = getattr(request.auth, "token_key", None)
        if token:
            # Each agent's token has its own budget, even when one user holds several.
            who = f"token:{token}"
        elif request.user and request.user.is_authenticated:
            who = f"user:{request.user.pk}"
        else:
            who = f"addr:{self.get_ident(request)}"
        return count(f"api-throttle:{who}:{period}:{window}", timeout=period + 1) <= limit

    def wait(self):
        return self.retry_after


# KEYS: the window's counter. ARGV: its lifetime; it expires soon after its window ends.
COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
"""


def count(key, *, timeout):
    """Add one to the counter ``key`` and return it; a missing counter starts at 1.

    On Redis this is one script call. Otherwise the cache (a database table) counts: incrementing
    first costs one call per request once the window's counter exists; only the first request of
    a window also creates it.
    """
    if settings.REDIS_URL:
        return run_script(COUNT_SCRIPT, keys=[f"{settings.CACHE_KEY_PREFIX}:{key}"], args=[timeout])
    try:
        return cache.incr(key)
    except ValueError:
        if cache.add(key, 1, timeout=timeout):
            return 1
    # Another request created the counter between our incr() and add().
    return cache.incr(key)
