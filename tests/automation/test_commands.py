"""``manage.py jobs``: submit, list, show, cancel and re-run, JSON out and exit codes."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from api.serializers import JobSerializer, JobStepSerializer
from automation.models import Job
from automation.representation import job_data
from backoffice.errors import InvalidInput
from claims import services as claims
from tests.claims.test_commands import manage

MANIFEST = {"name": "versions", "steps": [{"id": "uname", "argv": ["uname", "-a"]}]}


def jobs(*args):
    out = StringIO()
    call_command("jobs", *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db(transaction=True)
def test_submit_prints_the_job_and_bad_manifests_exit_with_their_code(submitter, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(MANIFEST))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "steps": [{"id": "a", "argv": "uname"}]}))
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"name": "x", "steps": [{"id": "a", "argv": ["rm", "x"]}]}))

    submitted = manage("jobs", "submit", str(good), "--user", "release-bot", "--live")
    invalid = manage("jobs", "submit", str(bad), "--user", "release-bot")
    refused = manage("jobs", "submit", str(outside), "--user", "release-bot")

    assert submitted.code == 0, submitted.stderr
    assert submitted.json["status"] == "awaiting_approval"
    assert submitted.json["mode"] == "dry_run"
    assert submitted.json["steps"][0]["argv"] == ["uname", "-a"]
    assert (invalid.code, invalid.error["error"]) == (2, "invalid")
    assert "steps/0/argv" in invalid.error["fields"]
    assert (refused.code, refused.error["error"]) == (4, "command_not_allowed")
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_list_show_cancel_and_rerun_print_the_same_shape(
    submit, approve, run_job, submitter, approver_actor, tmp_path
):
    job = approve(submit(MANIFEST | {"steps": [{"id": "a", "argv": ["false"]}]}, live=True))
    waiting = submit({"name": "echo", "steps": [{"id": "a", "argv": ["echo"]}]})

    listed = jobs("list")
    shown = jobs("show", job.short_id)
    cancelled = jobs("cancel", waiting.short_id, "--user", "release-bot")

    assert [item["id"] for item in listed] == [str(waiting.pk), str(job.pk)]
    assert shown == listed[1]
    assert cancelled["status"] == "cancelled"
    assert cancelled["changed"] is True
    assert set(cancelled) - {"changed"} == set(shown)


@pytest.mark.django_db
def test_rerun_from_the_command_line(live, submit, approve, run_job, django_user_model):
    approve(submit({"name": "f", "steps": [{"id": "a", "argv": ["false"]}]}, live=True))
    job = run_job()
    django_user_model.objects.create_superuser("ops")

    rerun = jobs("rerun", str(job.pk), "--user", "ops")

    assert rerun["status"] == "queued"
    assert claims.get_approval(job.approval_id).status == "executed"


@pytest.mark.django_db
def test_a_manifest_file_that_cannot_be_read_is_bad_input(submitter, tmp_path):
    with pytest.raises(InvalidInput, match="cannot read"):
        jobs("submit", str(tmp_path / "nope.json"), "--user", "release-bot")
    (tmp_path / "text").write_text("not json")
    with pytest.raises(InvalidInput, match="not JSON"):
        jobs("submit", str(tmp_path / "text"), "--user", "release-bot")


@pytest.mark.django_db
def test_the_api_documents_exactly_the_fields_a_job_and_its_steps_have(submit):
    shown = job_data(submit(MANIFEST | {"steps": [{"id": "a", "argv": ["echo"]}]}))

    assert set(JobSerializer().fields) == set(shown)
    assert set(JobStepSerializer().fields) == set(shown["steps"][0])
