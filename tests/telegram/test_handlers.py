import ast
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from django_q.models import Schedule
from model_bakery import baker

from audit.models import AuditEvent
from backoffice.actors import Actor, Source
from claims import services
from claims.models import ApprovalRequest
from telegram_bridge import handlers, inbound, tasks
from telegram_bridge.models import InboundUpdate, OutboundMessage

from .updates import ALICE, APPROVER_CHAT, MALLORY, button_update, text_update

Status = ApprovalRequest.Status


@pytest.fixture(autouse=True)
def approver_chat(settings):
    settings.TELEGRAM_APPROVER_CHAT_ID = APPROVER_CHAT


@pytest.fixture
def approval(db, agent_actor):
    return services.request_approval(
        kind="command", text="Run <migrate> & restart", agent_id="agent-7", actor=agent_actor
    )


def receive(update):
    """Store ``update`` as the webhook would and process it as a worker would."""
    stored = inbound.store(update, dispatch=False)
    inbound.process(stored.update.pk)
    stored.update.refresh_from_db()
    return stored.update


def answers():
    return list(OutboundMessage.objects.filter(method="answerCallbackQuery"))


def replies():
    return list(
        OutboundMessage.objects.filter(method="sendMessage").exclude(
            dedupe_key__endswith=":requested"
        )
    )


def mark_sent(approval, telegram_message_id=77):
    original = OutboundMessage.objects.get(dedupe_key=f"approval:{approval.pk.hex}:requested")
    original.status = OutboundMessage.Status.SENT
    original.telegram_message_id = telegram_message_id
    original.save()
    return original


# --- Announcing requests ----------------------------------------------------------------------


def test_request_is_announced_to_the_approver_chat_with_buttons(approval):
    message = OutboundMessage.objects.get(dedupe_key=f"approval:{approval.pk.hex}:requested")

    assert message.method == "sendMessage"
    assert message.chat_id == APPROVER_CHAT
    assert message.payload["parse_mode"] == "HTML"
    assert "Run &lt;migrate&gt; &amp; restart" in message.payload["text"]
    assert approval.short_id in message.payload["text"]
    assert "agent-7" in message.payload["text"]
    buttons = message.payload["reply_markup"]["inline_keyboard"][0]
    assert [b["callback_data"] for b in buttons] == [
        f"approve:{approval.pk.hex}",
        f"deny:{approval.pk.hex}",
        f"info:{approval.pk.hex}",
    ]


def test_nothing_is_announced_without_an_approver_chat(db, settings, agent_actor):
    settings.TELEGRAM_APPROVER_CHAT_ID = None

    services.request_approval(kind="claim", text="x", agent_id="a", actor=agent_actor)

    assert not OutboundMessage.objects.exists()


# --- Buttons ----------------------------------------------------------------------------------


def test_linked_approver_approves_with_the_button(approval, approver_account):
    mark_sent(approval, telegram_message_id=77)

    update = receive(button_update(f"approve:{approval.pk.hex}", message_id=77))

    assert update.status == InboundUpdate.Status.PROCESSED
    approval.refresh_from_db()
    assert approval.status == Status.APPROVED
    assert approval.decided_by == approver_account.user
    assert approval.decision_source == Source.TELEGRAM
    event = AuditEvent.objects.get(action="approval.approved")
    assert (event.source, event.actor_label, event.actor) == (
        "telegram",
        "approver (@alice)",
        approval.decided_by,
    )
    (answer,) = answers()
    assert answer.payload["callback_query_id"].startswith("cq")
    assert answer.payload["text"].startswith("Approved request")
    (edit,) = OutboundMessage.objects.filter(method="editMessageText")
    assert edit.payload["message_id"] == 77
    assert "reply_markup" not in edit.payload
    assert "Approved by approver (telegram)" in edit.payload["text"]


def test_linked_approver_denies_with_the_button(approval, approver_account):
    receive(button_update(f"deny:{approval.pk.hex}"))

    approval.refresh_from_db()
    assert approval.status == Status.DENIED
    assert answers()[0].payload["text"].startswith("Denied request")


def test_decision_before_the_request_was_sent_rewrites_the_waiting_message(
    approval, approver_account
):
    receive(button_update(f"approve:{approval.pk.hex}"))

    original = OutboundMessage.objects.get(dedupe_key=f"approval:{approval.pk.hex}:requested")
    assert "Approved by approver" in original.payload["text"]
    assert "reply_markup" not in original.payload
    assert not OutboundMessage.objects.filter(method="editMessageText").exists()


def test_decision_in_the_admin_edits_the_telegram_message_too(approval, approver_actor):
    mark_sent(approval, telegram_message_id=12)

    services.decide(approval.pk, "deny", actor=approver_actor, note="not now")

    (edit,) = OutboundMessage.objects.filter(method="editMessageText")
    assert edit.payload["message_id"] == 12
    assert "Denied by approver (admin)" in edit.payload["text"]


def test_info_button_answers_with_the_details_as_an_alert(approval, approver_account):
    receive(button_update(f"info:{approval.pk.hex}"))

    (answer,) = answers()
    assert answer.payload["show_alert"] is True
    assert approval.short_id in answer.payload["text"]
    assert "Pending" in answer.payload["text"]
    approval.refresh_from_db()
    assert approval.status == Status.PENDING


@pytest.mark.parametrize("data", ["approve:nothex", "launch:" + "a" * 32, "", "approve:"])
def test_unknown_button_data_gets_a_polite_answer(db, approver_account, data):
    update = receive(button_update(data))

    assert update.status == InboundUpdate.Status.PROCESSED
    assert answers()[0].payload["text"] == "This button is not valid any more."


def test_button_for_an_unknown_request_says_so(db, approver_account):
    receive(button_update("approve:" + uuid.uuid4().hex))

    assert answers()[0].payload["text"].startswith("No approval request with id")


def test_unlinked_user_is_refused_and_the_attempt_audited(approval):
    update = receive(button_update(f"approve:{approval.pk.hex}", sender=MALLORY))

    assert update.status == InboundUpdate.Status.PROCESSED
    approval.refresh_from_db()
    assert approval.status == Status.PENDING
    assert answers()[0].payload["text"].startswith("Sorry, only linked approvers")
    event = AuditEvent.objects.get(action="telegram.unauthorized")
    assert event.source == "telegram"
    assert event.actor_label == "@mallory"
    assert event.object_id == approval.pk.hex
    assert event.details["telegram_user_id"] == MALLORY["id"]
    assert event.details["telegram_username"] == "mallory"
    assert event.details["attempted"] == f"approve {approval.short_id}"


def test_linked_user_without_the_decide_permission_is_refused(approval):
    clerk = baker.make("auth.User", username="clerk", is_active=True)
    baker.make("telegram_bridge.TelegramAccount", telegram_user_id=MALLORY["id"], user=clerk)

    receive(button_update(f"deny:{approval.pk.hex}", sender=MALLORY))

    approval.refresh_from_db()
    assert approval.status == Status.PENDING
    assert AuditEvent.objects.get(action="telegram.unauthorized").details["linked_user"] == "clerk"


def test_deactivated_link_is_refused(approval, approver_account):
    approver_account.is_active = False
    approver_account.save()

    receive(button_update(f"approve:{approval.pk.hex}"))

    approval.refresh_from_db()
    assert approval.status == Status.PENDING
    assert AuditEvent.objects.filter(action="telegram.unauthorized").count() == 1


def test_user_linked_directly_with_the_permission_may_decide(approval):
    user = baker.make("auth.User", username="bob", is_active=True)
    user.user_permissions.add(Permission.objects.get(codename="decide_approvalrequest"))
    baker.make("telegram_bridge.TelegramAccount", telegram_user_id=MALLORY["id"], user=user)

    receive(button_update(f"approve:{approval.pk.hex}", sender=MALLORY))

    approval.refresh_from_db()
    assert approval.status == Status.APPROVED


def test_pressing_approve_twice_decides_once(approval, approver_account):
    receive(button_update(f"approve:{approval.pk.hex}"))
    receive(button_update(f"approve:{approval.pk.hex}"))

    assert AuditEvent.objects.filter(action="approval.approved").count() == 1
    _, second = answers()
    assert second.payload["text"] == f"Request {approval.short_id} was already approved."


def test_deny_after_approve_is_explained_not_applied(approval, approver_account):
    receive(button_update(f"approve:{approval.pk.hex}"))
    receive(button_update(f"deny:{approval.pk.hex}"))

    approval.refresh_from_db()
    assert approval.status == Status.APPROVED
    assert "is approved; it cannot be denied now" in answers()[1].payload["text"]


def test_self_approval_refusal_is_explained(approval, approver_account, settings):
    settings.APPROVAL_FORBID_SELF_APPROVAL = True
    mine = services.request_approval(
        kind="claim",
        text="mine",
        agent_id="approver",
        actor=Actor(source=Source.API, user=approver_account.user),
    )

    receive(button_update(f"approve:{mine.pk.hex}"))

    assert answers()[0].payload["text"] == "You may not decide a request you made yourself."


# --- Text commands ----------------------------------------------------------------------------


def reply_text():
    (reply,) = replies()
    return reply.payload["text"]


def test_approve_command_with_a_prefix_approves(approval, approver_account):
    receive(text_update(f"/approve {approval.pk.hex[:6]}"))

    approval.refresh_from_db()
    assert approval.status == Status.APPROVED
    assert reply_text().startswith(f"Approved request {approval.short_id}")
    assert replies()[0].payload["reply_parameters"]["message_id"]


def test_deny_command_addressed_to_the_bot_by_name_denies(approval, approver_account):
    receive(text_update(f"/deny@claimdesk_bot {approval.short_id}"))

    approval.refresh_from_db()
    assert approval.status == Status.DENIED


def test_approve_command_with_a_five_character_prefix_is_refused(approval, approver_account):
    receive(text_update(f"/approve {approval.pk.hex[:5]}"))

    approval.refresh_from_db()
    assert approval.status == Status.PENDING
    assert "at least 6 hexadecimal characters" in reply_text()


def test_approve_command_with_an_ambiguous_prefix_is_refused(db, approver_account):
    for tail in ("1", "2"):
        baker.make(ApprovalRequest, id=uuid.UUID("abcdef00" + "0" * 23 + tail), kind="claim")

    receive(text_update("/approve abcdef"))

    assert "matches more than one request" in reply_text()
    assert not ApprovalRequest.objects.exclude(status=Status.PENDING).exists()


def test_approve_command_with_an_unknown_prefix_says_so(approval, approver_account):
    unknown = "0123456" if not approval.pk.hex.startswith("0123456") else "fedcba9"

    receive(text_update(f"/approve {unknown}"))

    assert reply_text() == f"No approval request with an id starting {unknown}."


def test_approve_command_without_an_id_explains_the_usage(db, approver_account):
    receive(text_update("/approve"))

    assert "Give the request id" in reply_text()


def test_approve_command_from_an_unlinked_user_is_refused_and_audited(approval):
    receive(text_update(f"/approve {approval.short_id}", sender=MALLORY))

    approval.refresh_from_db()
    assert approval.status == Status.PENDING
    assert reply_text().startswith("Sorry, only linked approvers can decide")
    event = AuditEvent.objects.get(action="telegram.unauthorized")
    assert event.details["attempted"] == f"/approve {approval.short_id}"


def test_status_lists_pending_requests(approval, approver_account, agent_actor):
    other = services.request_approval(
        kind="manifest", text="Release 1.2\nwith notes", agent_id="ci", actor=agent_actor
    )
    services.decide(other.pk, "deny", actor=Actor(source=Source.CLI, user=approver_account.user))
    services.request_approval(kind="claim", text="Take story 9", agent_id="b", actor=agent_actor)

    receive(text_update("/status"))

    text = reply_text()
    assert f"<code>{approval.short_id}</code> command: Run &lt;migrate&gt; &amp; restart" in text
    assert "Take story 9" in text
    assert other.short_id not in text


def test_status_with_nothing_pending_says_so(db, approver_account):
    receive(text_update("/status"))

    assert reply_text() == "No requests are waiting for a decision."


def test_status_from_an_unlinked_user_is_refused(approval):
    receive(text_update("/status", sender=MALLORY))

    assert approval.short_id not in reply_text()
    assert AuditEvent.objects.filter(action="telegram.unauthorized").exists()


@pytest.mark.parametrize("text", ["/help", "/start"])
def test_help_lists_the_commands_to_anyone(db, text):
    receive(text_update(text, sender=MALLORY))

    assert "/approve &lt;id&gt;" in reply_text()
    assert "/status" in reply_text()


def test_unknown_command_points_to_help(db):
    receive(text_update("/launch rockets"))

    assert reply_text() == "I don't know /launch. Send /help for what I can do."


def test_plain_text_is_ignored(db, approver_account):
    update = receive(text_update("good morning"))

    assert update.status == InboundUpdate.Status.IGNORED
    assert not replies()


def test_same_message_delivered_under_a_new_update_id_is_answered_once(approval, approver_account):
    receive(text_update(f"/approve {approval.short_id}", message_id=31))
    second = receive(text_update(f"/approve {approval.short_id}", message_id=31))

    assert second.status == InboundUpdate.Status.IGNORED
    assert len(replies()) == 1


# --- Failures ---------------------------------------------------------------------------------


def test_handler_failure_is_recorded_redacted_and_does_not_escape(db, monkeypatch, settings):
    token = settings.TELEGRAM_BOT_TOKEN

    def explode(update):
        raise RuntimeError(f"boom at https://api.telegram.org/bot{token}/sendMessage")

    monkeypatch.setattr(handlers, "handle", explode)

    update = receive(text_update("/status"))

    assert update.status == InboundUpdate.Status.FAILED
    assert update.error.startswith("RuntimeError: boom")
    assert token not in update.error


def test_update_is_processed_once_however_often_its_task_runs(approval, approver_account):
    stored = inbound.store(button_update(f"approve:{approval.pk.hex}"), dispatch=False)

    results = [inbound.process(stored.update.pk) for _ in range(3)]

    assert results[0] is not None
    assert results[1:] == [None, None]
    assert len(answers()) == 1


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 1, "message": {"text": "/status"}},
        {"update_id": 4, "callback_query": {"id": "q", "from": "alice"}},
    ],
)
def test_updates_missing_what_a_handler_needs_are_ignored(db, update):
    assert receive(update).status == InboundUpdate.Status.IGNORED


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 2, "message": {"text": "/status", "from": {"id": "x"}, "chat": {"id": 1}}},
        {"update_id": 3, "callback_query": {"id": 5, "from": ALICE, "data": "x"}},
        {"update_id": 5, "message": {"text": 5, "from": ALICE, "chat": {"id": 1}}},
        {"update_id": 6, "message": {"text": "/status", "from": ALICE, "chat": {"id": 2**70}}},
    ],
)
def test_updates_with_fields_of_the_wrong_type_are_quarantined_with_the_reason(db, update):
    row = receive(update)

    assert row.status == InboundUpdate.Status.FAILED
    assert "must be" in row.error or "out of range" in row.error
    assert not OutboundMessage.objects.exists()


def test_decision_while_the_request_is_being_sent_edits_it_once_sent(approval, approver_actor):
    original = OutboundMessage.objects.get(dedupe_key=f"approval:{approval.pk.hex}:requested")
    original.status = OutboundMessage.Status.SENDING
    original.save()

    services.decide(approval.pk, "approve", actor=approver_actor)

    schedule = Schedule.objects.get(func="telegram_bridge.tasks.refresh_approval_message")
    assert not OutboundMessage.objects.filter(method="editMessageText").exists()
    mark_sent(approval, telegram_message_id=5)
    tasks.refresh_approval_message(*ast.literal_eval(schedule.args))
    (edit,) = OutboundMessage.objects.filter(method="editMessageText")
    assert edit.payload["message_id"] == 5
    assert "Approved by approver (admin)" in edit.payload["text"]


def test_updates_whose_task_was_lost_are_processed_by_the_sweep(approval, approver_account):
    stored = inbound.store(button_update(f"approve:{approval.pk.hex}"))
    assert inbound.process_stale() == 0
    InboundUpdate.objects.filter(pk=stored.update.pk).update(
        received_at=timezone.now() - timedelta(minutes=2)
    )

    assert tasks.process_stale_updates() == 1
    approval.refresh_from_db()
    assert approval.status == Status.APPROVED


def test_the_message_names_the_checked_user_and_the_agent_label(approval):
    message = OutboundMessage.objects.get(dedupe_key=f"approval:{approval.pk.hex}:requested")

    assert "Requested by agent-owner (agent-7)" in message.payload["text"]
