"""The Redis cache keeps one client per connection pool and behaves as Django's own."""

import threading

from backoffice.cache import RedisCache


def cache_on(test_redis):
    return RedisCache(test_redis.url, {"KEY_PREFIX": test_redis.prefix})


def test_every_call_shares_one_client_and_its_pool(test_redis):
    cache = cache_on(test_redis)

    cache.set("answer", {"permissions": {"claims.decide_approvalrequest"}}, 30)
    assert cache.get_many(["answer", "missing"]) == {
        "answer": {"permissions": {"claims.decide_approvalrequest"}}
    }
    assert cache.add("count", 1) and cache.incr("count") == 2

    client = cache._cache.get_client()
    assert cache._cache.get_client(write=True) is client
    assert len(client.connection_pool._available_connections) == 1


def test_threads_share_the_client_safely(test_redis):
    cache = cache_on(test_redis)
    wrong = []

    def write_and_read(thread):
        for number in range(100):
            cache.set(f"{thread}:{number}", number)
            if cache.get(f"{thread}:{number}") != number:
                wrong.append((thread, number))

    threads = [threading.Thread(target=write_and_read, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert wrong == []
    assert len(test_redis.client.keys(f"{test_redis.prefix}:*")) == 400
