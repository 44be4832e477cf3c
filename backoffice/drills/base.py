"""What every drill shares: a fake Telegram, a queue and rate-limiter keys of the drill's own,
messages to send and the checks that none was lost."""

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.test.utils import override_settings
from django_q.brokers import get_broker
from django_q.conf import Conf

from telegram_bridge import outbox
from telegram_bridge.fake_server import FakeTelegramServer
from telegram_bridge.models import OutboundMessage

Status = OutboundMessage.Status
MANAGE_PY = Path(settings.BASE_DIR) / "manage.py"
# Private chats (1 message/s each, where groups get 20/min) with ids far above any real user's.
FIRST_CHAT = 999_000_000_000
STOP_DEADLINE = 15.0


class DrillFailed(Exception):
    """The drill found the runbook's recovery incomplete: a message lost, stuck or doubled."""


@dataclass
class Drill:
    """One drill: its name (``manage.py drill NAME``), its runbook and what it does."""

    name: str
    runbook: str
    summary: str
    run: Callable[["DrillRun"], None]


REGISTRY: dict[str, Drill] = {}


def drill(name: str, runbook: str, summary: str) -> Callable:
    def register(function: Callable[["DrillRun"], None]) -> Callable[["DrillRun"], None]:
        REGISTRY[name] = Drill(name, runbook, summary, function)
        return function

    return register


@dataclass
class DrillRun:
    """The state of one drill while it runs, and its report lines."""

    name: str
    timeout: float
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    report: list[str] = field(default_factory=list)
    fake_server: FakeTelegramServer | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def fake(self) -> FakeTelegramServer:
        """The run's fake Telegram; every drill runs inside ``fake_telegram``, which starts it."""
        if self.fake_server is None:
            raise DrillFailed("the drill's fake Telegram is not running")
        return self.fake_server

    @property
    def first_chat(self) -> int:
        """Chats of this run's own, so no earlier run's send rate slows it down."""
        return FIRST_CHAT + int(self.run_id, 16) % 10**6 * 100

    @property
    def queue(self) -> str:
        return f"{settings.Q_CLUSTER['name']}-drill-{self.run_id}"

    def step(self, text: str) -> None:
        self.report.append(text)

    def check(self, condition: object, message: str) -> None:
        if not condition:
            raise DrillFailed(message)

    def wait_for(self, what: str, condition: Callable[[], object]) -> object:
        deadline = time.monotonic() + self.timeout
        while True:
            result = condition()
            if result:
                return result
            for process in self.processes:
                if process.poll() is not None:
                    raise DrillFailed(f"a process the drill started exited (pid {process.pid})")
            if time.monotonic() > deadline:
                raise DrillFailed(f"timed out after {self.timeout:.0f}s waiting for {what}")
            time.sleep(0.1)

    # --- Messages ---------------------------------------------------------------------------

    def enqueue(self, count: int, label: str) -> list[OutboundMessage]:
        """``count`` messages, one per chat, committed, as an approval request would queue them."""
        with transaction.atomic():
            return [
                outbox.enqueue(
                    method="sendMessage",
                    chat_id=self.first_chat + n,
                    payload={"text": f"Drill {self.run_id}: {label} {n}"},
                    dedupe_key=f"drill:{self.run_id}:{label}:{n}",
                )
                for n in range(count)
            ]

    @staticmethod
    def statuses(messages: list[OutboundMessage]) -> dict[str, int]:
        found: dict[str, int] = {}
        for status in (
            outbox.messages()
            .filter(pk__in=[m.pk for m in messages])
            .values_list("status", flat=True)
        ):
            found[status] = found.get(status, 0) + 1
        return found

    def all_are(self, messages: list[OutboundMessage], status: str) -> Callable[[], bool]:
        """A condition: every one of ``messages`` is in ``status``."""
        return lambda: self.statuses(messages) == {status: len(messages)}

    def check_all_sent_once(self, messages: list[OutboundMessage]) -> None:
        """Nothing lost: every message sent, and each arrived exactly once."""
        statuses = self.statuses(messages)
        self.check(statuses == {Status.SENT: len(messages)}, f"not all sent: {statuses}")
        sent = self.fake.control.sent(method="sendMessage")
        texts = [entry["payload"].get("text", "") for entry in sent]
        for message in messages:
            copies = texts.count(message.payload["text"])
            self.check(copies == 1, f"message #{message.pk} arrived {copies} times")
        self.step(f"all {len(messages)} messages sent, each exactly once")

    # --- Processes --------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "TELEGRAM_API_BASE_URL": self.fake.base_url,
            "TELEGRAM_BOT_TOKEN": settings.TELEGRAM_BOT_TOKEN,
            "Q_CLUSTER_NAME": self.queue,
            "TELEGRAM_RATE_REDIS_PREFIX": settings.TELEGRAM_RATE_REDIS_PREFIX,
            "PYTHONUNBUFFERED": "1",
        }

    def start_worker(self) -> subprocess.Popen:
        log = tempfile.TemporaryFile()  # noqa: SIM115 (kept by the process)
        # A fixed command line: this interpreter, this project's manage.py.
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, str(MANAGE_PY), "qcluster"],
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=settings.BASE_DIR,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def stop_processes(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=STOP_DEADLINE)
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# Retries short enough for a drill; each drill overrides what it exercises.
FAST = {
    "OUTBOX_MAX_ATTEMPTS": 3,
    "TELEGRAM_RETRY_TOTAL": 0,
    "TELEGRAM_READ_TIMEOUT": 2.0,
    "OUTBOX_BACKOFF_BASE": 0.05,
    "OUTBOX_BACKOFF_MAX": 0.2,
    "OUTBOX_INLINE_WAIT_MAX": 3.0,
    "OUTBOX_DRAIN_SECONDS": 10.0,
}


@contextmanager
def drill_environment(run: DrillRun) -> Iterator[DrillRun]:
    """A fake Telegram, and a queue and rate-limiter keys of the run's own; all undone after."""
    run.fake_server = FakeTelegramServer(token=settings.TELEGRAM_BOT_TOKEN or None).start()
    overrides = override_settings(
        TELEGRAM_API_BASE_URL=run.fake.base_url,
        TELEGRAM_BOT_TOKEN=run.fake.token,
        TELEGRAM_APPROVER_CHAT_ID=run.first_chat,
        TELEGRAM_RATE_REDIS_PREFIX=f"{run.queue}:tg-rate",
        Q_CLUSTER={**settings.Q_CLUSTER, "name": run.queue},
        **FAST,
    )
    previous = Conf.PREFIX, Conf.CLUSTER_NAME
    overrides.enable()
    Conf.PREFIX = Conf.CLUSTER_NAME = run.queue
    try:
        yield run
    finally:
        run.stop_processes()
        get_broker(run.queue).delete_queue()
        Conf.PREFIX, Conf.CLUSTER_NAME = previous
        overrides.disable()
        run.fake.stop()
