"""Drill of the inbound side: a poison update between good ones, by webhook and by getUpdates."""

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.core.wsgi import get_wsgi_application
from django.db import connections
from django.test.utils import override_settings

from audit.models import AuditEvent
from telegram_bridge import inbound, outbox
from telegram_bridge.client import get_client
from telegram_bridge.models import InboundUpdate, OutboundMessage
from telegram_bridge.polling import Poller

from .base import DrillRun, drill
from .telegram import drain_until, staff_actor

Update = InboundUpdate.Status
# A callback_query.id of this size once made the whole update fail to store, with no answer.
HUGE_ID = "q" * 100_000
TEXT_REASON = "message.text is not valid Unicode text"
ID_REASON = "callback_query.id is longer than"


class QuietHandler(WSGIRequestHandler):
    """The webhook's requests are the drill's business, not the terminal's."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def webhook_server(run: DrillRun) -> Iterator[str]:
    """This project's webhook on a free local port, served from a thread; yields its URL."""
    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=QuietHandler)

    def serve() -> None:
        try:
            server.serve_forever(poll_interval=0.1)
        finally:
            connections.close_all()

    thread = threading.Thread(target=serve, name=f"drill-webhook-{run.run_id}", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/telegram/webhook/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


class Leg:
    """Good updates with two poison ones between them, each in a chat of its own."""

    def __init__(self, run: DrillRun, first_chat: int) -> None:
        self.run = run
        self.first_chat = first_chat
        self.good: list[dict] = []
        self.poison: dict[int, str] = {}
        self.poison_chats: list[int] = []
        self.update_ids: list[int] = []

    def send(self) -> None:
        control = self.run.fake.control
        chats = iter(range(self.first_chat, self.first_chat + 5))
        self._good(control.send_text(chat := next(chats), chat, "/help"))
        self._poison(control.send_update("message", poison_text(chat := next(chats))), TEXT_REASON)
        self.poison_chats.append(chat)
        self._good(control.press_button(chat := next(chats), 1, chat, "drill"))
        self._poison(
            control.send_update("callback_query", poison_press(chat := next(chats))), ID_REASON
        )
        self.poison_chats.append(chat)
        self._good(control.send_text(chat := next(chats), chat, "/help"))

    def _good(self, update: dict) -> None:
        self.good.append(update)
        self.update_ids.append(update["update_id"])

    def _poison(self, update: dict, reason: str) -> None:
        self.poison[update["update_id"]] = reason
        self.update_ids.append(update["update_id"])


def poison_text(chat: int) -> dict:
    """A command whose text holds a lone surrogate, which no database stores as text."""
    sender = {"id": chat, "is_bot": False, "first_name": "Drill"}
    return {
        "message_id": 1,
        "from": sender,
        "chat": {"id": chat, "type": "private", "first_name": "Drill"},
        "date": 0,
        "text": "/help \ud800",
    }


def poison_press(chat: int) -> dict:
    """A button press whose ``callback_query.id`` is far over what Telegram hands out."""
    return {
        "id": HUGE_ID,
        "from": {"id": chat, "is_bot": False, "first_name": "Drill"},
        "message": {"message_id": 1, "chat": {"id": chat, "type": "private"}, "date": 0},
        "chat_instance": str(chat),
        "data": "drill",
    }


def answers_to(run: DrillRun, update: dict) -> int:
    """How many answers the bot sent to ``update``: replies to a message, or callback answers."""
    if "callback_query" in update:
        query_id = update["callback_query"]["id"]
        sent = run.fake.control.sent(method="answerCallbackQuery")
        return sum(entry["payload"].get("callback_query_id") == query_id for entry in sent)
    message = update["message"]
    sent = run.fake.control.sent(chat_id=message["chat"]["id"], method="sendMessage")
    return sum(
        (entry["payload"].get("reply_parameters") or {}).get("message_id") == message["message_id"]
        for entry in sent
    )


def statuses(update_ids: list[int]) -> dict[int, str]:
    return dict(
        InboundUpdate.objects.filter(update_id__in=update_ids).values_list("update_id", "status")
    )


def process_received(update_ids: list[int]) -> None:
    """What a worker does with each update the webhook queued."""
    waiting = InboundUpdate.objects.filter(update_id__in=update_ids, status=Update.RECEIVED)
    for pk in waiting.values_list("pk", flat=True):
        inbound.process(pk)


def answers_delivered(run: DrillRun, chats: range) -> None:
    """Deliver the bot's answers, as the workers do, until none waits."""
    queued = outbox.messages().filter(chat_id__in=chats).exclude(status=OutboundMessage.Status.SENT)
    drain_until(run, "the answers to go out", lambda: not queued.exists())


def by_webhook(run: DrillRun, leg: Leg) -> None:
    secret = secrets.token_urlsafe(24)
    client = get_client()
    with override_settings(TELEGRAM_WEBHOOK_SECRET=secret), webhook_server(run) as url:
        client.call("setWebhook", {"url": url, "secret_token": secret})
        leg.send()
        run.wait_for("the webhook to acknowledge", lambda: not run.fake.control.pending_updates())
        client.call("deleteWebhook", {})
    failures = run.fake.control.stats()["webhook_failed"]
    run.check(failures == 0, f"the webhook refused {failures} deliveries; Telegram would resend")
    run.check(len(statuses(leg.update_ids)) == len(leg.update_ids), "the webhook lost an update")
    process_received(leg.update_ids)
    run.step(
        f"webhook: {len(leg.good)} good updates and 2 poison ones (a lone surrogate in a text, a "
        f"{len(HUGE_ID):,}-character callback_query.id) all answered 200, none sent again"
    )


def by_polling(run: DrillRun, leg: Leg) -> None:
    poller = Poller(timeout=0, process_inline=True)
    leg.send()
    run.wait_for(
        "the poller to confirm every update",
        lambda: poller.poll_once() == 0 and not run.fake.control.pending_updates(),
    )
    last = max(leg.update_ids)
    run.check(poller.offset == last + 1, f"the poller's offset is {poller.offset}, not {last + 1}")
    run.check(len(statuses(leg.update_ids)) == len(leg.update_ids), "the poller lost an update")
    run.step(
        f"getUpdates: the same mix stored; the offset moved past all {len(leg.update_ids)} "
        "and Telegram holds none"
    )


@drill(
    "poison-update",
    "docs/runbooks/poison-update.md",
    "Updates Telegram cannot make us store or handle (a lone surrogate in a text, a huge "
    "callback_query.id) arrive between good ones by webhook and by getUpdates; they are "
    "quarantined as failed with the reason, the good ones are answered once, the failed ones "
    "retried or left quarantined.",
)
def poison_update(run: DrillRun) -> None:
    legs = [Leg(run, run.first_chat), Leg(run, run.first_chat + 10)]
    by_webhook(run, legs[0])
    by_polling(run, legs[1])
    chats = range(run.first_chat, run.first_chat + 20)
    answers_delivered(run, chats)

    good = [update for leg in legs for update in leg.good]
    good_ids = [update["update_id"] for update in good]
    run.check(
        set(statuses(good_ids).values()) == {Update.PROCESSED},
        f"good updates not all processed: {statuses(good_ids)}",
    )
    for update in good:
        copies = answers_to(run, update)
        run.check(copies == 1, f"update {update['update_id']} was answered {copies} times")
    run.step(f"all {len(good)} good updates handled, each answered exactly once")

    poison = {update_id: reason for leg in legs for update_id, reason in leg.poison.items()}
    failed = InboundUpdate.objects.filter(status=Update.FAILED, update_id__in=poison)
    run.check(
        {row.update_id for row in failed} == set(poison), "a poison update is not listed as failed"
    )
    for row in failed:
        run.check(poison[row.update_id] in row.error, f"update {row.update_id}: {row.error}")
    poison_chats = [chat for leg in legs for chat in leg.poison_chats]
    run.check(
        not outbox.messages().filter(chat_id__in=poison_chats).exists(),
        "a quarantined update was answered",
    )
    run.step(
        f"runbook: Inbound updates, status failed: the {len(poison)} poison updates, each with its "
        f"reason ({TEXT_REASON}; {ID_REASON} 256 characters)"
    )

    actor = staff_actor(run)
    outcomes = {row.update_id: inbound.retry(row.pk, actor=actor) for row in failed}
    retried = AuditEvent.objects.filter(
        action="telegram.update_retried", object_id__in=[str(row.pk) for row in failed]
    ).count()
    run.check(retried == len(poison), f"{retried} retries audited, not {len(poison)}")
    answers_delivered(run, chats)
    for leg in legs:
        for update_id, reason in leg.poison.items():
            row = outcomes[update_id]
            if reason == TEXT_REASON:
                run.check(row.status == Update.PROCESSED, f"retry of {update_id}: {row.status}")
                kept = {"update_id": update_id, "message": row.payload["message"]}
                run.check(
                    answers_to(run, kept) == 1, f"retried update {update_id} not answered once"
                )
            else:
                run.check(
                    row.status == Update.FAILED and reason in row.error,
                    f"retry of {update_id}: {row.status} {row.error}",
                )
    run.step(
        "runbook: Retry selected failed updates: the texts, kept with U+FFFD for the bad "
        "character, handled and answered once; the oversized ids failed again with the reason "
        "and stay quarantined"
    )
