"""An update in, a claims service call out.

Buttons (``approve:<hex>``, ``deny:<hex>``, ``info:<hex>``) and the text commands ``/approve``,
``/deny``, ``/status`` and ``/help`` end in ``claims.services.decide`` or a selector, with an actor
built here from the Telegram sender. Only senders linked (``TelegramAccount``, active) to a user who
may decide approval requests can decide; anyone else is refused politely and the attempt audited.

Every answer goes through the outbox under a key made from the update itself (the callback query id,
or the chat and message id), so an update delivered twice decides once and answers once.
"""

import re
from dataclasses import dataclass
from functools import cached_property
from html import escape

from django.contrib.auth.models import User
from django.utils.text import Truncator

from audit.services import record
from backoffice.actors import Actor, Source
from backoffice.errors import DomainError, InvalidInput
from claims import selectors, services
from claims.models import ApprovalRequest, Decision
from claims.voting import tally

from . import outbox
from .models import InboundUpdate, TelegramAccount

Status = InboundUpdate.Status

BUTTON_DATA = re.compile(r"^(approve|deny|info):([0-9a-f]{32})$")
# The decisions a button or a text command may take.
DECIDING = (Decision.APPROVE, Decision.DENY)
# Telegram shows at most 200 characters in a callback answer.
CALLBACK_TEXT_LIMIT = 200
# The most of what a user typed that a reply repeats.
ECHO_LIMIT = 40
STATUS_LIST_LIMIT = 20
# An approval request id with its dashes: the longest prefix /approve and /deny can take.
ID_LENGTH = 36

HELP = (
    "I post approval requests here; press Approve or Deny under a request, or use:\n"
    "/approve <id> - approve the request whose id starts with <id> (6+ characters)\n"
    "/deny <id> - deny it\n"
    "/status - the requests waiting for a decision\n"
    "/help - this message"
)
REFUSAL = (
    "Sorry, only linked approvers can {what}. Ask an administrator to link your Telegram "
    "account (id {telegram_id}) to a user who may decide approval requests."
)


@dataclass(frozen=True)
class Sender:
    """The Telegram user behind an update, and the Django user their account is linked to."""

    telegram_id: int
    username: str
    user: User | None = None

    @classmethod
    def from_update(cls, from_user):
        if not isinstance(from_user, dict) or not _is_int(from_user.get("id")):
            return None
        username = from_user.get("username")
        account = (
            TelegramAccount.objects.select_related("user")
            .filter(telegram_user_id=from_user["id"], is_active=True)
            .first()
        )
        return cls(
            telegram_id=from_user["id"],
            # Telegram usernames have at most 32 characters; the audit label keeps 200.
            username=username[:64] if isinstance(username, str) else "",
            user=account.user if account else None,
        )

    @cached_property
    def actor(self):
        """Built once per update, so everything the update causes shares one trace id."""
        label = f"@{self.username}" if self.username else str(self.telegram_id)
        return Actor(source=Source.TELEGRAM, user=self.user, label=label)

    @property
    def may_decide(self):
        return self.actor.has_perm(services.DECIDE_PERMISSION)


def handle(update):
    """Act on one stored update; returns the ``InboundUpdate`` status it ends in."""
    if isinstance(update.get("callback_query"), dict):
        return on_button(update["callback_query"])
    if isinstance(update.get("message"), dict):
        return on_message(update["message"])
    return Status.IGNORED


# --- Buttons --------------------------------------------------------------------------------


def on_button(query):
    query_id = query.get("id")
    sender = Sender.from_update(query.get("from"))
    if not isinstance(query_id, str) or not query_id or sender is None:
        return Status.IGNORED
    answer_key = f"callback:{query_id}"
    if _answered(answer_key):
        return Status.IGNORED
    chat_id = _chat_id(query.get("message")) or sender.telegram_id
    match = BUTTON_DATA.match(query.get("data") or "")
    if match is None:
        _answer(answer_key, sender, query_id, "This button is not valid any more.")
        return Status.PROCESSED
    action, hex_id = match.groups()
    if action == "info":
        text, alert = _info(hex_id), True
    else:
        text, alert = _decide(sender, action, hex_id, chat_id), False
    _answer(answer_key, sender, query_id, text, show_alert=alert)
    return Status.PROCESSED


def _info(hex_id):
    try:
        approval = selectors.get_approval(hex_id)
    except DomainError as error:
        return explain(error)
    lines = [
        f"{approval.get_kind_display()} {approval.short_id}: {approval.get_status_display()}",
        f"Requested by {approval.requester}",
        f"Expires {approval.expires_at:%Y-%m-%d %H:%M} UTC",
    ]
    if approval.claim is not None:
        lines.append(f"Claim {approval.claim.work_item}, held by {approval.claim.holder}")
    counted = tally(approval)
    if counted.quorum > 1:
        lines.append(f"Votes: {counted.summary()}")
    return "\n".join(lines)


def _answer(key, sender, query_id, text, *, show_alert=False):
    # The answer pops up for the one user who pressed, so it counts against their send rate,
    # not the (much slower) rate of the group the button is in.
    payload = {"callback_query_id": query_id, "text": Truncator(text).chars(CALLBACK_TEXT_LIMIT)}
    if show_alert:
        payload["show_alert"] = True
    outbox.enqueue(
        method="answerCallbackQuery", chat_id=sender.telegram_id, payload=payload, dedupe_key=key
    )


# --- Text commands --------------------------------------------------------------------------


def on_message(message):
    text = message.get("text")
    chat_id = _chat_id(message)
    message_id = message.get("message_id")
    sender = Sender.from_update(message.get("from"))
    if not isinstance(text, str) or not text.startswith("/") or sender is None:
        return Status.IGNORED
    if chat_id is None or not _is_int(message_id):
        return Status.IGNORED
    reply_key = f"message:{chat_id}:{message_id}:reply"
    if _answered(reply_key):
        return Status.IGNORED
    command, *arguments = text.split()
    command = command[1:].split("@", 1)[0].lower()
    if command in DECIDING:
        reply = _decide_by_prefix(sender, Decision(command), arguments, chat_id)
    elif command == "status":
        reply = _status(sender, chat_id)
    elif command in ("help", "start"):
        reply = escape(HELP, quote=False)
    else:
        reply = f"I don't know /{_echo(command)}. Send /help for what I can do."
    outbox.enqueue(
        method="sendMessage",
        chat_id=chat_id,
        payload={
            "text": reply,
            "parse_mode": "HTML",
            "reply_parameters": {"message_id": message_id, "allow_sending_without_reply": True},
        },
        dedupe_key=reply_key,
    )
    return Status.PROCESSED


def _decide_by_prefix(sender, decision, arguments, chat_id):
    if not sender.may_decide:
        attempted = Truncator(f"/{decision} {' '.join(arguments)}".strip()).chars(100)
        return _refuse(sender, attempted, chat_id)
    if len(arguments) != 1:
        return f"Give the request id: /{decision} &lt;first 6+ characters of the id&gt;"
    if len(arguments[0]) > ID_LENGTH:
        return f"{_echo(arguments[0])} is not a request id; give its first 6+ characters."
    try:
        approval = selectors.find_approval_by_prefix(arguments[0])
        return escape(_decided(sender, decision, approval), quote=False)
    except DomainError as error:
        return escape(explain(error), quote=False)


def _status(sender, chat_id):
    if not sender.may_decide:
        return _refuse(sender, "/status", chat_id, what="see pending requests")
    pending = list(selectors.pending_approvals()[: STATUS_LIST_LIMIT + 1])
    if not pending:
        return "No requests are waiting for a decision."
    lines = [f"<b>Waiting for a decision</b> ({len(pending[:STATUS_LIST_LIMIT])} shown)"]
    for approval in pending[:STATUS_LIST_LIMIT]:
        excerpt = escape(Truncator(" ".join(approval.text.split())).chars(60), quote=False)
        counted = tally(approval, waiting=False)
        votes = f" ({counted.counted})" if counted.quorum > 1 else ""
        lines.append(f"<code>{approval.short_id}</code> {approval.kind}{votes}: {excerpt}")
    if len(pending) > STATUS_LIST_LIMIT:
        lines.append("…and more; see the admin for the full list.")
    return "\n".join(lines)


# --- Deciding -------------------------------------------------------------------------------


def _decide(sender, decision, hex_id, chat_id):
    """Decide from a button; returns the words to answer with."""
    if not sender.may_decide:
        return _refuse(sender, f"{decision} {hex_id[:8]}", chat_id, approval_id=hex_id)
    try:
        return _decided(sender, decision, selectors.get_approval(hex_id))
    except DomainError as error:
        return explain(error)


def _decided(sender, decision, approval):
    """Cast the sender's vote; the answer says what it did, with the count under a quorum."""
    result = services.decide(approval.pk, decision, actor=sender.actor)
    counted = result.tally or tally(result.approval)
    if result.approval.status in ApprovalRequest.AWAITING_DECISION:
        if not result.changed:
            return f"You already voted to {decision}: {counted.summary()}."
        return f"Your vote is counted: {counted.summary()}."
    done = result.approval.get_status_display()
    if not result.changed:
        return f"Request {approval.short_id} was already {done.lower()}."
    decided = f"{done} request {approval.short_id}: {Truncator(approval.text).chars(80)}"
    if counted.quorum == 1:
        return decided
    return f"Your vote is counted: {counted.counted}. {decided}"


def _refuse(sender, attempted, chat_id, *, what="decide approval requests", approval_id=""):
    """Audit a refused attempt and return the polite refusal."""
    record(
        "telegram.unauthorized",
        actor=sender.actor,
        object_type="claims.approvalrequest" if approval_id else "",
        object_id=approval_id,
        details={
            "telegram_user_id": sender.telegram_id,
            "telegram_username": sender.username,
            "chat_id": chat_id,
            "attempted": attempted,
            "linked_user": sender.user.get_username() if sender.user is not None else None,
        },
    )
    return REFUSAL.format(what=what, telegram_id=sender.telegram_id)


def explain(error):
    """The one place a domain error becomes words for a Telegram user."""
    if isinstance(error, InvalidInput):
        return "Sorry, that did not work: " + "; ".join(error.fields.values()) + "."
    # NotFound, InvalidTransition and NotPermitted already say which request and why.
    return error.message


# --- Small helpers --------------------------------------------------------------------------


def _echo(typed):
    """A short prefix of what a user typed, safe inside an HTML reply."""
    return escape(Truncator(typed).chars(ECHO_LIMIT), quote=False)


def _answered(dedupe_key):
    """Whether this update's answer is already queued: the update was handled before."""
    return outbox.exists(dedupe_key)


def _chat_id(message):
    if isinstance(message, dict) and isinstance(message.get("chat"), dict):
        chat_id = message["chat"].get("id")
        if _is_int(chat_id):
            return chat_id
    return None


def _is_int(value):
    """A whole number that fits the 64-bit columns ids are stored in."""
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
