"""Lua scripts on Redis, for code that needs Redis itself rather than Django's cache.

The send-rate limiter and the API throttle keep their counts with small scripts: each is atomic
and costs one round trip, which Django's cache API cannot express.
"""

import os

import redis
from django.conf import settings

_clients = {}


def run_script(script, *, keys, args):
    """Run the Lua ``script`` on ``REDIS_URL`` and return its answer (Redis keeps the compiled
    script after its first run; later runs send only its digest)."""
    return _client().register_script(script)(keys=keys, args=args)


def _client():
    # One per process, since a forked worker must not share its parent's connections, and per
    # URL, since tests point REDIS_URL elsewhere.
    key = (os.getpid(), settings.REDIS_URL)
    if key not in _clients:
        _clients.clear()
        _clients[key] = redis.Redis.from_url(settings.REDIS_URL)
    return _clients[key]
