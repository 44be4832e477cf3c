"""/metrics is for staff and for the configured bearer token; everyone else gets 401 or 403."""

import pytest
from django.db import DatabaseError
from model_bakery import baker

from backoffice.redaction import redact
from monitoring import metrics

from .scrape import METRICS_TOKEN

pytestmark = pytest.mark.django_db


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_the_bearer_token_opens_metrics_in_the_prometheus_text_format(client):
    response = client.get("/metrics", headers=bearer(METRICS_TOKEN))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"# TYPE claimdesk_outbox_messages gauge" in response.content


def test_a_staff_session_opens_metrics(client):
    client.force_login(baker.make("auth.User", is_staff=True, is_active=True))

    assert client.get("/metrics").status_code == 200


def test_no_credentials_is_401_with_a_bearer_challenge(client):
    response = client.get("/metrics")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'


@pytest.mark.parametrize("token", ["wrong-token", "", METRICS_TOKEN + "x", "é"])
def test_a_wrong_token_is_401(client, token):
    assert client.get("/metrics", headers=bearer(token)).status_code == 401


def test_no_token_is_accepted_while_none_is_configured(client, settings):
    settings.METRICS_BEARER_TOKEN = ""

    assert client.get("/metrics", headers=bearer("")).status_code == 401


def test_a_signed_in_user_who_is_not_staff_is_403(client):
    client.force_login(baker.make("auth.User", is_staff=False, is_active=True))

    assert client.get("/metrics").status_code == 403


def test_only_reads_are_allowed(client):
    assert client.post("/metrics", headers=bearer(METRICS_TOKEN)).status_code == 405


def test_a_database_that_does_not_answer_is_503_not_500(client, monkeypatch):
    def unreachable(now):
        raise DatabaseError("connection refused")

    monkeypatch.setattr(metrics, "SECTIONS", [unreachable])

    assert client.get("/metrics", headers=bearer(METRICS_TOKEN)).status_code == 503


def test_the_metrics_token_is_redacted_from_logs():
    assert METRICS_TOKEN not in redact(f"scrape refused for {METRICS_TOKEN}")


def test_with_https_only_the_probes_answer_over_plain_http_and_metrics_do_not(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)
    assert client.get("/metrics", headers=bearer(METRICS_TOKEN)).status_code == 301
