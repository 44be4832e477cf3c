"""Every failure has the one error body; throttling answers 429 with Retry-After."""

import pytest

from .conftest import client_with_token, token_for

URL = "/api/v1/claims/"


@pytest.fixture(params=["database", "redis"])
def counters(request, settings):
    """The throttle counts in Redis when REDIS_URL is set, else in the cache's table."""
    if request.param == "database":
        settings.REDIS_URL = ""
        yield
        return
    test_redis = request.getfixturevalue("test_redis")
    settings.REDIS_URL = test_redis.url
    settings.CACHE_KEY_PREFIX = test_redis.prefix
    yield
    assert list(test_redis.client.scan_iter(f"{test_redis.prefix}:*")), (
        "the throttle counted elsewhere"
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("counters")
class TestThrottling:
    def test_requests_over_the_rate_get_429_with_retry_after(self, agent_client, settings):
        settings.API_THROTTLE_RATE = "3/day"
        # A window may end between two requests (at midnight), so allow one reset.
        codes = [agent_client.get(URL) for _ in range(8)]
        throttled = next(response for response in codes if response.status_code == 429)
        assert throttled.json()["error"] == "throttled"
        assert set(throttled.json()) == {"error", "detail", "fields"}
        assert 0 < int(throttled["Retry-After"]) <= 86400

    def test_each_user_has_its_own_allowance(self, agent_client, approver_client, settings):
        settings.API_THROTTLE_RATE = "2/day"
        for _ in range(3):
            agent_client.get(URL)
        assert approver_client.get(URL).status_code == 200

    def test_each_token_of_one_user_has_its_own_allowance(self, agent_user, settings):
        settings.API_THROTTLE_RATE = "2/day"
        first, second = (client_with_token(token_for(agent_user)) for _ in range(2))
        for _ in range(3):
            first.get(URL)
        assert first.get(URL).status_code == 429
        assert second.get(URL).status_code == 200


def test_a_malformed_rate_setting_is_refused_loudly():
    from api.throttling import parse_rate

    with pytest.raises(ValueError, match="API_THROTTLE_RATE"):
        parse_rate("lots")
    assert parse_rate("1000/min") == (1000, 60)


@pytest.mark.django_db
class TestErrorBody:
    @pytest.mark.parametrize(
        ("method", "path", "status", "code"),
        [
            ("get", "/api/v1/nowhere/", 404, "not_found"),
            ("delete", URL, 405, "method_not_allowed"),
            ("get", "/api/v1/claims/abc/", 404, "not_found"),
        ],
    )
    def test_framework_errors_use_the_same_shape(self, agent_client, method, path, status, code):
        response = getattr(agent_client, method)(path)
        assert response.status_code == status
        if response["Content-Type"].startswith("application/json"):
            assert response.json() == {
                "error": code,
                "detail": response.json()["detail"],
                "fields": {},
            }
