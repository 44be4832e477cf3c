"""A request that runs a job shows it in the approver chat: the approved hash, dry run or live,
and once the job ended each step with ✓ or ✗ (delivered to the fake Bot API over HTTP)."""

import pytest

from automation import runner, services
from backoffice.actors import Actor, Source
from claims import services as claims
from telegram_bridge import delivery

from .updates import APPROVER_CHAT

pytestmark = pytest.mark.django_db

MANIFEST = {
    "name": "release",
    "steps": [
        {"id": "tag", "argv": ["echo", "v1"]},
        {"id": "publish", "argv": ["true"]},
    ],
}


def deliver_everything():
    outcomes = delivery.drain(seconds=20)
    assert set(outcomes) <= {"sent", "not_modified"}, outcomes


@pytest.fixture
def chat(settings, fake_telegram_unthrottled, tmp_path):
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT
    settings.AUTOMATION_WORK_ROOT = tmp_path
    return fake_telegram_unthrottled


def test_the_message_shows_the_hash_and_then_the_jobs_outcome(chat, agent_actor, approver_actor):
    job = services.submit(manifest_data=MANIFEST, actor=agent_actor)
    deliver_everything()
    (posted,) = chat.control.messages(APPROVER_CHAT)
    assert job.short_hash in posted["text"]
    assert "DRY RUN" in posted["text"]

    claims.decide(job.approval_id, "approve", actor=approver_actor)
    runner.run_next()
    deliver_everything()

    (message,) = chat.control.messages(APPROVER_CHAT)
    assert "Executed" in message["text"]
    assert "Job succeeded" in message["text"]
    assert "✓ tag (exit 0, 0.0 s)" in message["text"]
    assert "✓ publish" in message["text"]


def test_a_rerun_edits_the_message_again_with_its_new_outcome(
    chat, agent_actor, approver_actor, settings
):
    settings.AUTOMATION_COMMAND_ALLOWLIST = ["echo", "true"]
    job = services.submit(manifest_data=MANIFEST, actor=agent_actor)
    claims.decide(job.approval_id, "approve", actor=approver_actor)
    taken = services.take_next("w1")
    services.finish(taken, "w1", "failed", "Step tag exited with 1.")
    deliver_everything()
    assert "Job failed" in chat.control.messages(APPROVER_CHAT)[0]["text"]

    approver_actor.user.is_superuser = True
    staff = Actor(source=Source.ADMIN, user=approver_actor.user)
    services.rerun(job.pk, actor=staff)
    runner.run_next()
    deliver_everything()

    assert "Job succeeded" in chat.control.messages(APPROVER_CHAT)[0]["text"]
