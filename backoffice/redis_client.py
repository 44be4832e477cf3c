"""Lua scripts and pub/sub on Redis, for code that needs Redis itself rather than Django's cache.

The send-rate limiter and the API throttle keep their counts with small scripts: each is atomic
and costs one round trip, which Django's cache API cannot express. Decisions are announced to
waiting requests on a pub/sub channel (``claims.waiting``).
"""

import os
from functools import lru_cache

import redis
from django.conf import settings


def run_script(script, *, keys, args):
    """Run the Lua ``script`` on ``REDIS_URL`` and return its answer (Redis keeps the compiled
    script after its first run; later runs send only its digest)."""
    client = _client(os.getpid(), settings.REDIS_URL)
    return client.register_script(script)(keys=keys, args=args)


def publish(channel: str, message: str) -> None:
    """Publish ``message`` on the pub/sub ``channel`` of ``REDIS_URL``."""
    _client(os.getpid(), settings.REDIS_URL).publish(channel, message)


@lru_cache(maxsize=1)
def _client(pid, url):
    # One per process, since a forked worker must not share its parent's connections, and per
    # URL, since tests point REDIS_URL elsewhere.
    return redis.Redis.from_url(url)
