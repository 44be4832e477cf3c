"""/healthz says the process is up; /readyz checks the database, broker, heartbeat, migrations."""

import socket
from datetime import timedelta

import pytest
import redis
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django_q.brokers import redis_broker
from model_bakery import baker

from monitoring import health, heartbeat

pytestmark = pytest.mark.django_db


def closed_port():
    """A local port nothing listens on: a stopped server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StoppedRedis(redis_broker.Redis):
    """django-q2's Redis broker, pointed at a Redis server that is not running."""

    port = closed_port()

    @staticmethod
    def get_connection(list_key=None):
        return redis.Redis(host="127.0.0.1", port=StoppedRedis.port, socket_connect_timeout=0.5)


@pytest.fixture
def beating():
    heartbeat.beat()


@pytest.fixture(autouse=True)
def migrations_checked_afresh(monkeypatch):
    monkeypatch.setattr(health, "_migrated", False)


def test_healthz_answers_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["process"]["status"] == "ok"
    assert body["checked_at"].endswith("Z")


def test_readyz_is_200_when_every_check_passes(client, beating):
    response = client.get("/readyz")

    assert response.status_code == 200, response.json()
    checks = response.json()["checks"]
    assert set(checks) == {"database", "broker", "worker_heartbeat", "migrations"}
    assert all(check["status"] == "ok" for check in checks.values())
    assert all(check["duration_ms"] >= 0 for check in checks.values())


def test_readyz_is_200_with_a_running_redis_broker(client, beating, monkeypatch, test_redis):
    class RunningRedis(redis_broker.Redis):
        @staticmethod
        def get_connection(list_key=None):
            return redis.Redis.from_url(test_redis.url, socket_connect_timeout=0.5)

    monkeypatch.setattr(health, "get_broker", lambda: RunningRedis(list_key=test_redis.prefix))

    response = client.get("/readyz")

    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["broker"]["status"] == "ok"


def test_readyz_is_503_naming_the_broker_when_it_is_stopped(client, beating, monkeypatch):
    monkeypatch.setattr(health, "get_broker", StoppedRedis)

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["broker"]["status"] == "fail"
    assert "ConnectionError" in body["checks"]["broker"]["error"]
    assert body["checks"]["database"]["status"] == "ok"


def test_readyz_is_503_without_any_heartbeat(client):
    response = client.get("/readyz")

    assert response.status_code == 503
    check = response.json()["checks"]["worker_heartbeat"]
    assert check == {**check, "status": "fail", "error": "no worker has ever written a heartbeat"}


def test_readyz_is_503_when_the_heartbeat_is_older_than_allowed(client, settings):
    settings.WORKER_HEARTBEAT_MAX_AGE = 120
    baker.make(
        "monitoring.WorkerHeartbeat", worker="w1", beat_at=timezone.now() - timedelta(minutes=3)
    )

    response = client.get("/readyz")

    assert response.status_code == 503
    assert "limit 120 s" in response.json()["checks"]["worker_heartbeat"]["error"]


def test_readyz_is_503_while_a_migration_is_not_applied(client, beating):
    MigrationRecorder(connection).record_unapplied("monitoring", "0001_initial")

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["migrations"]["error"] == (
        "1 migrations not applied: monitoring.0001_initial"
    )


def test_the_last_beat_is_the_latest_of_every_worker():
    now = timezone.now()
    baker.make("monitoring.WorkerHeartbeat", worker="a", beat_at=now - timedelta(seconds=50))
    baker.make("monitoring.WorkerHeartbeat", worker="b", beat_at=now - timedelta(seconds=5))

    assert heartbeat.last_beat() == now - timedelta(seconds=5)


def test_a_worker_beats_on_one_row_of_its_own():
    heartbeat.beat()
    heartbeat.beat()

    assert heartbeat.last_beat() is not None
    assert list(heartbeat.WorkerHeartbeat.objects.values_list("worker", flat=True)) == [
        socket.gethostname()
    ]
