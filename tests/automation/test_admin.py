"""The jobs console: submit a manifest, see steps with their outcome, cancel and re-run."""

import json

import pytest
from django.urls import reverse

from automation.models import Job

pytestmark = pytest.mark.django_db

MANIFEST = {"name": "versions", "steps": [{"id": "hello", "argv": ["echo", "hello"]}]}


def test_staff_submit_a_manifest_and_see_the_job_with_its_hash(admin_client):
    response = admin_client.post(
        reverse("admin:automation_job_add"), {"manifest": json.dumps(MANIFEST)}
    )

    job = Job.objects.get()
    assert response.status_code == 302
    page = admin_client.get(reverse("admin:automation_job_change", args=[job.pk])).content.decode()
    assert job.manifest_sha256 in page
    assert "hello" in page
    assert "job.submitted" in page
    listing = admin_client.get(reverse("admin:automation_job_changelist")).content.decode()
    assert job.short_hash in listing
    assert "dry run" in listing


def test_every_problem_of_a_bad_manifest_is_shown_and_nothing_saved(admin_client):
    bad = {"name": "", "steps": [{"id": "a", "argv": ["rm"]}, {"id": "b", "argv": "x"}]}

    page = admin_client.post(
        reverse("admin:automation_job_add"), {"manifest": json.dumps(bad)}
    ).content.decode()

    assert "steps/1/argv" in page
    assert "name:" in page
    assert Job.objects.count() == 0
    not_json = admin_client.post(reverse("admin:automation_job_add"), {"manifest": "{"})
    assert "Not JSON" in not_json.content.decode()


def test_the_cancel_and_rerun_actions_call_the_services(
    admin_client, live, submit, approve, run_job
):
    waiting = submit(MANIFEST)
    approve(submit({"name": "fails", "steps": [{"id": "no", "argv": ["false"]}]}, live=True))
    failed = run_job()
    url = reverse("admin:automation_job_changelist")

    admin_client.post(url, {"action": "cancel", "_selected_action": [waiting.pk]})
    response = admin_client.post(
        url, {"action": "rerun", "_selected_action": [waiting.pk, failed.pk]}, follow=True
    )

    waiting.refresh_from_db()
    failed.refresh_from_db()
    assert waiting.status == Job.Status.CANCELLED
    assert failed.status == Job.Status.QUEUED
    assert "1 queued again; 1 skipped" in response.content.decode()
