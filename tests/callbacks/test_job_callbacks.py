"""A job's callback URL: checked like a request's, it hears the decision and then the job's end,
signed, keyed ``job-<id>-<status>``, through the same outbox."""

import json

import pytest
from model_bakery import baker

from automation import runner, services
from automation.models import Job
from backoffice.actors import Actor, Source
from callbacks import delivery
from callbacks.models import Callback
from claims.models import Decision
from tests.api.conftest import client_with_token, token_for

from .test_callbacks import decide, make_due

Status = Callback.Status
RELEASE = {
    "name": "release",
    "steps": [{"id": "tag", "argv": ["echo", "v1"]}, {"id": "check", "argv": ["false"]}],
}


@pytest.fixture(autouse=True)
def allowlist(settings, tmp_path):
    settings.AUTOMATION_COMMAND_ALLOWLIST = ["echo", "false"]
    settings.AUTOMATION_ALLOW_EXECUTION = False
    settings.AUTOMATION_WORK_ROOT = tmp_path / "jobs"


@pytest.fixture
def agent_client(db):
    return client_with_token(token_for(baker.make("auth.User", username="agent-bot")))


def submit(client, callback_url, *, live=False):
    return client.post(
        "/api/v1/jobs/",
        {"manifest": RELEASE, "callback_url": callback_url, "live": live},
        format="json",
    )


def sent(receiver):
    """Deliver every queued callback; the bodies the receiver verified, by idempotency key."""
    make_due()
    delivery.sweep()
    assert all(received.verified for received in receiver.received)
    return {
        received.headers["Idempotency-Key"]: json.loads(received.body)
        for received in receiver.received
    }


def test_a_job_reports_its_approval_then_its_end(agent_client, receiver, approver):
    receiver.secret = agent_client.get("/api/v1/callbacks/secret/").json()["secret"]
    job = submit(agent_client, receiver.url).json()
    decide(job["approval"], approver)
    runner.run_next()

    bodies = sent(receiver)

    ended = bodies[f"job-{job['id']}-succeeded"]
    assert set(bodies) == {f"approval-{job['approval']}-approved", f"job-{job['id']}-succeeded"}
    assert ended["event"] == "job.succeeded"
    assert ended["job"]["id"] == job["id"] and ended["job"]["mode"] == "dry_run"
    assert [step["status"] for step in ended["job"]["steps"]] == ["succeeded", "succeeded"]
    assert "stdout" not in ended["job"]["steps"][0]
    assert Callback.objects.filter(status=Status.SENT).count() == 2


def test_a_denied_job_reports_its_refusal(agent_client, receiver, approver):
    job = submit(agent_client, receiver.url).json()

    decide(job["approval"], approver, Decision.DENY)

    keys = set(Callback.objects.values_list("idempotency_key", flat=True))
    assert keys == {f"approval-{job['approval']}-denied", f"job-{job['id']}-refused"}
    body = json.loads(Callback.objects.get(idempotency_key__startswith="job-").body)
    assert body["event"] == "job.refused" and body["job"]["status"] == "refused"


def test_a_rerun_that_ends_again_is_reported_again(agent_client, receiver, approver, settings):
    settings.AUTOMATION_ALLOW_EXECUTION = True
    operator = baker.make("auth.User", username="operator", is_staff=True, is_superuser=True)
    job = submit(agent_client, receiver.url, live=True).json()
    decide(job["approval"], approver)
    runner.run_next()
    services.rerun(job["id"], actor=Actor(Source.ADMIN, operator))
    runner.run_next()

    keys = set(
        Callback.objects.filter(idempotency_key__startswith="job-").values_list(
            "idempotency_key", flat=True
        )
    )
    assert keys == {f"job-{job['id']}-failed", f"job-{job['id']}-failed-run2"}


def test_a_job_without_a_callback_url_sends_nothing(agent_client, approver):
    job = submit(agent_client, "").json()
    decide(job["approval"], approver)
    runner.run_next()

    assert Job.objects.get().status == Job.Status.SUCCEEDED
    assert not Callback.objects.exists()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://169.254.169.254/latest", "CALLBACK_ALLOWED_HOSTS"),
        ("ftp://127.0.0.1/hook", "https"),
    ],
)
def test_a_bad_callback_url_refuses_the_job_and_saves_nothing(agent_client, receiver, url, problem):
    answer = submit(agent_client, url)

    assert answer.status_code == 400
    assert problem in answer.json()["fields"]["callback_url"][0]
    assert not Job.objects.exists()
