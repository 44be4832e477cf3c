"""Pushing updates to the webhook, in order, as Telegram does.

Each pending update is POSTed with the ``X-Telegram-Bot-Api-Secret-Token`` header; a 2xx answer
acknowledges it, anything else (or no answer) is recorded in ``getWebhookInfo`` and the same update
is sent again after a growing delay, so a later update never overtakes an unacknowledged one.
"""

import threading
import time

import requests

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name


class WebhookSender(threading.Thread):
    def __init__(self, state, *, retry_delay=0.1, retry_max=5.0, timeout=5.0):
        super().__init__(name="fake-telegram-webhook", daemon=True)
        self.state = state
        self.retry_delay = retry_delay
        self.retry_max = retry_max
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False

    def run(self):
        delay = self.retry_delay
        while not self.state.stopped.is_set():
            job = self._next()
            if job is None:
                continue
            entry, url, secret = job
            error = self._post(url, secret, entry.update)
            with self.state.cond:
                if error is None:
                    if entry in self.state.pending:
                        self.state.pending.remove(entry)
                    self.state.stats_counters.webhook_delivered += 1
                    delay = self.retry_delay
                    continue
                self.state.webhook.last_error_date = int(time.time())
                self.state.webhook.last_error_message = error
                self.state.stats_counters.webhook_failed += 1
            self.state.stopped.wait(delay)
            delay = min(delay * 2, self.retry_max)
        self.session.close()

    def _next(self):
        """The oldest pending update and where to send it, once there is a webhook and an update."""
        with self.state.cond:
            if self.state.webhook.url and self.state.pending:
                webhook = self.state.webhook
                return self.state.pending[0], webhook.url, webhook.secret_token
            self.state.cond.wait(0.5)
            return None

    def _post(self, url, secret, update):
        """None when the webhook acknowledged ``update``, else the error, in Telegram's words."""
        headers = {SECRET_HEADER: secret} if secret else {}
        try:
            response = self.session.post(url, json=update, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            return "Timeout expired"
        except requests.RequestException:
            return "Connection refused"
        if 200 <= response.status_code < 300:
            return None
        return f"Wrong response from the webhook: {response.status_code} {response.reason}"
