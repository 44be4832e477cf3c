"""Everything the fake Bot API remembers: chats, messages, pending updates, webhook, faults, stats.

One ``FakeState`` per server, guarded by one condition variable: request threads, the webhook
sender and long polls all wait on it. Public methods named in ``CONTROL_ACTIONS`` are what the
HTTP control interface (and so ``FakeTelegramControl``) can call.
"""

import itertools
import math
import random
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field

FAULT_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    403: "Forbidden: bot was blocked by the user",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

CONTROL_ACTIONS = frozenset(
    {
        "send_text",
        "press_button",
        "sent",
        "messages",
        "pending_updates",
        "redeliver",
        "inject",
        "inject_hang",
        "inject_reset",
        "block_chat",
        "unblock_chat",
        "configure_flood",
        "reset",
        "stats",
    }
)


class ApiError(Exception):
    """A Bot API error answer: ``{"ok": false, "error_code": …, "description": …}``."""

    def __init__(self, error_code, description, *, retry_after=None):
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    def as_body(self):
        body = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def too_many_requests(seconds):
    retry_after = max(1, math.ceil(seconds))
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)


@dataclass(frozen=True)
class FloodLimits:
    """Telegram's documented limits; a burst lets a sender that is a little early through."""

    chat_per_second: float = 1.0
    chat_burst: int = 3
    group_per_minute: float = 20.0
    global_per_second: float = 30.0
    global_burst: int = 30


class TokenBucket:
    def __init__(self, rate, capacity):
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity)
        self.updated = time.monotonic()

    def wait(self, now):
        """Seconds until one token is available (0.0 when one is available now)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self):
        self.tokens -= 1


@dataclass
class Fault:
    kind: str  # "error", "hang" or "reset"
    remaining: int
    status: int | None = None
    description: str = ""
    retry_after: int | None = None
    seconds: float = 0.0

    def error(self):
        if self.status == 429:
            return too_many_requests(self.retry_after or 1)
        status = self.status or 500
        return ApiError(status, self.description or FAULT_DESCRIPTIONS.get(status, ""))


@dataclass(eq=False)
class PendingUpdate:
    update: dict
    replay: bool = False
    handed_out: bool = False

    @property
    def update_id(self):
        return self.update["update_id"]

    @property
    def kind(self):
        return next(key for key in self.update if key != "update_id")


@dataclass
class Webhook:
    url: str = ""
    secret_token: str = ""
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str = ""


@dataclass
class Stats:
    calls: Counter = field(default_factory=Counter)
    responses: Counter = field(default_factory=Counter)
    flood_limited: int = 0
    webhook_delivered: int = 0
    webhook_failed: int = 0

    def as_dict(self):
        return {
            "calls": dict(self.calls),
            "responses": {str(status): n for status, n in self.responses.items()},
            "too_many_requests": self.responses[429],
            "flood_limited": self.flood_limited,
            "webhook_delivered": self.webhook_delivered,
            "webhook_failed": self.webhook_failed,
        }


def user_object(from_user):
    """A Telegram ``User`` from an id or a partial dict."""
    if isinstance(from_user, int):
        from_user = {"id": from_user}
    user = {"is_bot": False, "first_name": f"User {from_user['id']}", **from_user}
    user["id"] = int(user["id"])
    return user


def chat_object(chat_id):
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"}
    kind = "supergroup" if str(chat_id).startswith("-100") else "group"
    return {"id": chat_id, "type": kind, "title": f"Group {chat_id}"}


class FakeState:
    def __init__(self, *, token, flood=None, chats=None):
        self.token = token
        bot_id = token.partition(":")[0]
        self.bot_id = int(bot_id) if bot_id.isdigit() else 1
        self.cond = threading.Condition()
        self.stopped = threading.Event()
        self.flood = flood
        self.known_chats = None if chats is None else {int(chat) for chat in chats}
        self._clear()

    def _clear(self):
        self.chat_messages = {}
        self.message_ids = defaultdict(int)
        # Like Telegram, ids start at an arbitrary number, so a restarted fake never repeats the
        # update or callback query ids a database kept from an earlier run.
        self.update_ids = itertools.count(random.randint(10**8, 9 * 10**8))
        self.all_updates = {}
        self.pending = []
        self.allowed_updates = None
        self.callback_queries = {}
        self.callback_ids = itertools.count(random.randint(10**8, 9 * 10**8))
        self.webhook = Webhook()
        self.faults = defaultdict(deque)
        self.blocked_chats = set()
        self.buckets = {}
        self.poll_generation = 0
        self.sent_log = []
        self.stats_counters = Stats()

    def stop(self):
        with self.cond:
            self.stopped.set()
            self.cond.notify_all()

    @property
    def bot_user(self):
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Claimdesk (fake)",
            "username": "claimdesk_fake_bot",
        }

    # --- Chats and messages ---------------------------------------------------------------

    def check_chat(self, chat_id):
        if self.known_chats is not None and chat_id not in self.known_chats:
            raise ApiError(400, "Bad Request: chat not found")
        if chat_id in self.blocked_chats:
            raise ApiError(403, "Forbidden: bot was blocked by the user")

    def new_message(self, chat_id, sender, **content):
        self.message_ids[chat_id] += 1
        message = {
            "message_id": self.message_ids[chat_id],
            "from": sender,
            "chat": chat_object(chat_id),
            "date": int(time.time()),
            **content,
        }
        self.chat_messages[(chat_id, message["message_id"])] = message
        return message

    def record_sent(self, method, payload, result, chat_id=None, message_id=None):
        self.sent_log.append(
            {
                "method": method,
                "chat_id": chat_id,
                "message_id": message_id,
                "payload": payload,
                "result": result,
                "at": time.time(),
            }
        )

    # --- Updates --------------------------------------------------------------------------

    def add_update(self, kind, body):
        update = {"update_id": next(self.update_ids), kind: body}
        self.all_updates[update["update_id"]] = update
        self.pending.append(PendingUpdate(update))
        self.cond.notify_all()
        return update

    def confirm_below(self, offset):
        """getUpdates' ``offset``: forget the updates before it (replays once handed out)."""
        if offset is None:
            return
        if offset < 0:
            self.pending = self.pending[offset:]
            return
        self.pending = [
            entry
            for entry in self.pending
            if entry.update_id >= offset or (entry.replay and not entry.handed_out)
        ]

    def take_for_poll(self, limit):
        allowed = self.allowed_updates
        if allowed:
            self.pending = [entry for entry in self.pending if entry.kind in allowed]
        batch = self.pending[:limit]
        for entry in batch:
            entry.handed_out = True
        return [entry.update for entry in batch]

    # --- Flood control and faults ---------------------------------------------------------

    def _bucket(self, key, rate, capacity):
        if key not in self.buckets:
            self.buckets[key] = TokenBucket(rate, capacity)
        return self.buckets[key]

    def check_flood(self, chat_id):
        """Take a send slot for ``chat_id`` or raise 429 with the seconds until one is free."""
        limits = self.flood
        if limits is None:
            return
        buckets = [
            self._bucket("global", limits.global_per_second, limits.global_burst),
            self._bucket(("chat", chat_id), limits.chat_per_second, limits.chat_burst),
        ]
        if chat_id < 0:
            per_minute = limits.group_per_minute
            buckets.append(self._bucket(("group", chat_id), per_minute / 60, max(1, per_minute)))
        now = time.monotonic()
        wait = max(bucket.wait(now) for bucket in buckets)
        if wait > 0:
            self.stats_counters.flood_limited += 1
            raise too_many_requests(wait)
        for bucket in buckets:
            bucket.take()

    def take_fault(self, method):
        for key in (method.lower(), "*"):
            queue = self.faults.get(key)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.popleft()
                return fault
        return None

    def _add_fault(self, method, fault):
        if fault.remaining < 1:
            raise ValueError("count must be at least 1")
        with self.cond:
            self.faults[method.lower()].append(fault)

    # --- Control actions ------------------------------------------------------------------

    def send_text(self, chat_id, from_user, text):
        """A user writes ``text`` in ``chat_id``; returns the new update."""
        with self.cond:
            content = {"text": text}
            if text.startswith("/"):
                command = text.split()[0]
                content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
            message = self.new_message(int(chat_id), user_object(from_user), **content)
            return self.add_update("message", message)

    def press_button(self, chat_id, message_id, from_user, data):
        """A user presses an inline button carrying ``data``; returns the callback_query update."""
        with self.cond:
            chat_id, message_id = int(chat_id), int(message_id)
            message = self.chat_messages.get((chat_id, message_id)) or {
                "message_id": message_id,
                "chat": chat_object(chat_id),
                "date": int(time.time()),
            }
            query_id = f"{self.bot_id}{next(self.callback_ids):010d}"
            self.callback_queries[query_id] = {"answered": False}
            body = {
                "id": query_id,
                "from": user_object(from_user),
                "message": message,
                "chat_instance": str(abs(chat_id)),
                "data": data,
            }
            return self.add_update("callback_query", body)

    def redeliver(self, update_id):
        """Deliver an update again, whether or not it was confirmed (a replay)."""
        with self.cond:
            update = self.all_updates.get(int(update_id))
            if update is None:
                raise ValueError(f"no update {update_id}")
            self.pending.append(PendingUpdate(update, replay=True))
            self.cond.notify_all()
            return update

    def sent(self, chat_id=None, method=None):
        """What the bot sent, edited or answered, oldest first."""
        with self.cond:
            return [
                entry
                for entry in self.sent_log
                if (chat_id is None or entry["chat_id"] == int(chat_id))
                and (method is None or entry["method"].lower() == method.lower())
            ]

    def messages(self, chat_id):
        """The current state of every message in a chat (after edits)."""
        with self.cond:
            return [
                message
                for (chat, _), message in sorted(self.chat_messages.items())
                if chat == int(chat_id)
            ]

    def pending_updates(self):
        """Updates not yet confirmed by getUpdates or acknowledged by the webhook."""
        with self.cond:
            return [entry.update for entry in self.pending]

    def inject(self, method, status, count=1, retry_after=None, description=""):
        """The next ``count`` calls of ``method`` ("*" for any) answer ``status``."""
        if status not in FAULT_DESCRIPTIONS and status != 429:
            raise ValueError(f"cannot inject status {status}")
        fault = Fault(
            "error", int(count), status=status, description=description, retry_after=retry_after
        )
        self._add_fault(method, fault)

    def inject_hang(self, method, seconds, count=1):
        """The next ``count`` calls of ``method`` answer only after ``seconds``."""
        self._add_fault(method, Fault("hang", int(count), seconds=float(seconds)))

    def inject_reset(self, method, count=1):
        """The next ``count`` calls of ``method`` get their connection reset, with no answer."""
        self._add_fault(method, Fault("reset", int(count)))

    def block_chat(self, chat_id):
        with self.cond:
            self.blocked_chats.add(int(chat_id))

    def unblock_chat(self, chat_id):
        with self.cond:
            self.blocked_chats.discard(int(chat_id))

    def configure_flood(self, enabled=True, **limits):
        """Replace the flood limits (``enabled=False`` turns flood control off)."""
        with self.cond:
            self.flood = FloodLimits(**limits) if enabled else None
            self.buckets = {}

    def reset(self):
        with self.cond:
            self._clear()
            self.cond.notify_all()

    def stats(self):
        with self.cond:
            return self.stats_counters.as_dict()
