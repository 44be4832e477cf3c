"""Django's Redis cache, with one client per connection pool rather than one per call.

Django's ``RedisCacheClient`` makes a new ``redis.Redis`` for every cache call, and redis-py fills
each new client's table of response callbacks (about two hundred commands) before it sends
anything. The API reads its cached permissions on every request, so that table was built on
every request. A client only holds its pool and that table, and is safe to share between
threads, so one per pool does; the pool still hands out the connections.
"""

from typing import Any

from django.core.cache.backends import redis


class RedisCacheClient(redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # Which server: the first for writes, any of the others for reads (not in the stubs).
        index = self._get_connection_pool_index(write)  # type: ignore[attr-defined]
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = super().get_client(key, write=write)
        return client


class RedisCache(redis.RedisCache):
    """``CACHES["default"]["BACKEND"]`` when ``REDIS_URL`` is set."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
