"""/api/v1/jobs/: submit, list, one job with its steps, cancel, re-run; the API's error codes."""

import pytest
from django.contrib.auth.models import Permission
from model_bakery import baker

from automation import runner
from automation.models import Job

from .conftest import client_with_token, token_for

URL = "/api/v1/jobs/"
MANIFEST = {
    "name": "versions",
    "steps": [{"id": "uname", "argv": ["uname", "-r"]}, {"id": "date", "argv": ["date", "-u"]}],
}

pytestmark = pytest.mark.django_db


def submit(client, manifest=MANIFEST, **body):
    return client.post(URL, {"manifest": manifest, **body}, format="json")


@pytest.fixture(autouse=True)
def work_root(settings, tmp_path):
    settings.AUTOMATION_WORK_ROOT = tmp_path


def test_an_agent_submits_a_manifest_and_its_request_binds_the_hash(agent_client):
    response = submit(agent_client, live=True, agent_id="release-agent")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "awaiting_approval"
    assert body["mode"] == "dry_run"
    assert body["submitted_by"] == "agent-bot"
    assert [step["argv"] for step in body["steps"]] == [["uname", "-r"], ["date", "-u"]]
    approval = agent_client.get(f"/api/v1/approvals/{body['approval']}/").json()
    assert approval["payload"]["manifest_sha256"] == body["manifest_sha256"]
    assert body["manifest_short"] in approval["text"]


def test_an_invalid_manifest_answers_400_with_every_problem(agent_client):
    response = submit(agent_client, {"name": "", "steps": [{"id": "a", "argv": []}], "x": 1})

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert set(body["fields"]) == {"name", "manifest", "steps/0/argv"}
    assert Job.objects.count() == 0


def test_a_command_off_the_allowlist_answers_403(agent_client):
    response = submit(agent_client, {"name": "x", "steps": [{"id": "a", "argv": ["rm", "-rf"]}]})

    assert response.status_code == 403
    assert response.json()["error"] == "command_not_allowed"
    assert "steps/0/argv/0" in response.json()["steps"]


def test_list_and_detail_show_the_same_job_with_its_steps(agent_client, approver_client):
    created = submit(agent_client).json()
    approver_client.post(f"/api/v1/approvals/{created['approval']}/approve/", {}, format="json")
    runner.run_next()

    listed = agent_client.get(URL, {"status": "succeeded"}).json()
    detail = agent_client.get(f"{URL}{created['short_id']}/").json()

    assert listed["results"] == [detail]
    assert detail["approval_status"] == "executed"
    assert [step["stdout"] for step in detail["steps"]] == ["DRY_RUN", "DRY_RUN"]


def test_an_unknown_job_is_404(agent_client):
    assert agent_client.get(f"{URL}nothing/").status_code == 404


def test_the_submitter_cancels_and_someone_else_may_not(agent_client, approver_client):
    created = submit(agent_client).json()

    refused = approver_client.post(f"{URL}{created['id']}/cancel/")
    cancelled = agent_client.post(f"{URL}{created['id']}/cancel/")
    again = agent_client.post(f"{URL}{created['id']}/cancel/")

    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
    assert cancelled.status_code == 200
    assert (cancelled.json()["status"], cancelled.json()["changed"]) == ("cancelled", True)
    assert again.json()["changed"] is False


def test_rerun_needs_the_permission_and_a_failed_job(agent_client, approver_client):
    created = submit(agent_client).json()
    staff = baker.make("auth.User", username="ops", is_staff=True, is_active=True)
    staff.user_permissions.add(Permission.objects.get(codename="rerun_job"))
    staff_client = client_with_token(token_for(staff))

    forbidden = agent_client.post(f"{URL}{created['id']}/rerun/")
    not_failed = staff_client.post(f"{URL}{created['id']}/rerun/")

    assert forbidden.status_code == 403
    assert (not_failed.status_code, not_failed.json()["error"]) == (409, "invalid_transition")
    assert not_failed.json()["status"] == "awaiting_approval"
