"""Voting from Telegram: each press is one vote, answered with the count; the buttons show it."""

import pytest
from model_bakery import baker

from claims import services
from claims.models import ApprovalRequest
from telegram_bridge import inbound
from telegram_bridge.models import OutboundMessage

from .updates import ALICE, APPROVER_CHAT, button_update

BOB = {"id": 1002, "is_bot": False, "first_name": "Bob", "username": "bob"}

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def approver_chat(settings):
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT


@pytest.fixture
def release(make_policy, release_managers, agent_actor):
    for sender in (ALICE, BOB):
        baker.make(
            "telegram_bridge.TelegramAccount",
            telegram_user_id=sender["id"],
            user=release_managers.user_set.get(username=sender["username"]),
        )
    make_policy(kind="manifest", quorum=2, approver_groups=[release_managers])
    return services.request_approval(kind="manifest", text="Release 2.4", actor=agent_actor)


def press(approval, sender, choice="approve"):
    """A button press, stored and handled as the webhook and a worker would; returns the answer."""
    update = button_update(f"{choice}:{approval.pk.hex}", sender=sender)
    stored = inbound.store(update, dispatch=False)
    inbound.process(stored.update.pk)
    query_id = update["callback_query"]["id"]
    return OutboundMessage.objects.get(dedupe_key=f"callback:{query_id}").payload["text"]


def announcement(approval):
    return OutboundMessage.objects.get(dedupe_key=f"approval:{approval.pk.hex}:requested").payload


def buttons(payload):
    return [button["text"] for button in payload["reply_markup"]["inline_keyboard"][0]]


def test_the_buttons_show_the_count_from_the_start(release):
    payload = announcement(release)

    assert buttons(payload) == ["✅ Approve 0/2", "❌ Deny", "🔍 Info"]
    assert "Votes: 0 of 2 approvals, waiting for alice, bob, carol" in payload["text"]


def test_each_press_is_a_vote_answered_with_the_count(release):
    first = press(release, ALICE)

    assert first == "Your vote is counted: 1 of 2 approvals, waiting for bob, carol."
    assert buttons(announcement(release))[0] == "✅ Approve 1/2"
    assert press(release, ALICE) == (
        "You already voted to approve: 1 of 2 approvals, waiting for bob, carol."
    )

    second = press(release, BOB)

    assert second == (
        f"Your vote is counted: 2 of 2 approvals. Approved request {release.short_id}: Release 2.4"
    )
    release.refresh_from_db()
    assert (release.status, release.decided_by.username) == (ApprovalRequest.Status.APPROVED, "bob")
    assert "reply_markup" not in announcement(release)
    assert "Approved by bob (telegram)" in announcement(release)["text"]


def test_a_deny_press_vetoes(release):
    press(release, ALICE)

    answer = press(release, BOB, "deny")

    assert answer.startswith(
        f"Your vote is counted: 1 of 2 approvals. Denied request {release.short_id}"
    )
    release.refresh_from_db()
    assert release.status == ApprovalRequest.Status.DENIED
