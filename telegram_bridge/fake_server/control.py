"""A client for the fake's control routes: act as a Telegram user, read back, inject faults.

It talks HTTP, so it drives a fake started by a test fixture and one started with
``manage.py telegram_fake_server`` in another process alike.
"""

import requests


class ControlError(Exception):
    """The fake refused a control call (unknown action or bad arguments)."""


class FakeTelegramControl:
    def __init__(self, base_url, *, timeout=10.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        # The fake is always local; a proxy from the environment must not be used.
        self.session.trust_env = False

    def _call(self, action, **kwargs):
        response = self.session.post(
            f"{self.base_url}/_control/{action}", json=kwargs, timeout=self.timeout
        )
        body = response.json()
        if not body.get("ok"):
            raise ControlError(body.get("description", f"HTTP {response.status_code}"))
        return body["result"]

    def send_text(self, chat_id, from_user, text):
        """A user writes ``text`` in ``chat_id``; returns the update."""
        return self._call("send_text", chat_id=chat_id, from_user=from_user, text=text)

    def press_button(self, chat_id, message_id, from_user, data):
        """A user presses an inline button; returns the ``callback_query`` update."""
        return self._call(
            "press_button", chat_id=chat_id, message_id=message_id, from_user=from_user, data=data
        )

    def redeliver(self, update_id):
        """Deliver an already delivered update again (webhook or getUpdates)."""
        return self._call("redeliver", update_id=update_id)

    def sent(self, chat_id=None, method=None):
        """Everything the bot sent, edited or answered: method, chat_id, message_id, payload."""
        return self._call("sent", chat_id=chat_id, method=method)

    def messages(self, chat_id):
        """Every message in a chat as it looks now (edits applied)."""
        return self._call("messages", chat_id=chat_id)

    def pending_updates(self):
        return self._call("pending_updates")

    def inject(self, method, status, count=1, retry_after=None, description=""):
        """The next ``count`` calls of ``method`` ("*": any) answer ``status`` (400…504, 429)."""
        return self._call(
            "inject",
            method=method,
            status=status,
            count=count,
            retry_after=retry_after,
            description=description,
        )

    def inject_hang(self, method, seconds, count=1):
        """The next ``count`` calls of ``method`` are answered (and acted on) after ``seconds``."""
        return self._call("inject_hang", method=method, seconds=seconds, count=count)

    def inject_reset(self, method, count=1):
        """The next ``count`` calls of ``method`` get a TCP reset and no answer."""
        return self._call("inject_reset", method=method, count=count)

    def block_chat(self, chat_id):
        """Sends to ``chat_id`` answer 403 "bot was blocked by the user" from now on."""
        return self._call("block_chat", chat_id=chat_id)

    def unblock_chat(self, chat_id):
        """Sends to ``chat_id`` go through again (the user unblocked the bot)."""
        return self._call("unblock_chat", chat_id=chat_id)

    def configure_flood(self, enabled=True, **limits):
        """Change the flood limits (see ``FloodLimits``), or turn them off."""
        return self._call("configure_flood", enabled=enabled, **limits)

    def reset(self):
        """Forget every message, update, fault, webhook and counter."""
        return self._call("reset")

    def stats(self):
        """Calls per method, answers per status, 429s, webhook deliveries."""
        return self._call("stats")

    def close(self):
        self.session.close()
