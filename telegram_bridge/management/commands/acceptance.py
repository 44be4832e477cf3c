"""``manage.py acceptance``: the whole approval flow over Telegram, end to end, with real processes.

It migrates the configured database, starts a fake Bot API (in this process), a real ``qcluster``
and a real ``telegram_poll`` (subprocesses), then walks one approval from the claim to the archive,
and one job from its submission to its request executed on a runner cluster (a dry run), printing
each step. Any deviation or timeout stops the run with a clear message and a non-zero exit
code; every process it started is stopped, also on failure and Ctrl-C.

The run uses its own task queue name and rate-limiter key prefix, so it never shares a Redis queue
or a send rate with another run or with a deployment on the same Redis.
"""

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings
from django_q.conf import Conf

from automation import services as jobs
from automation.models import Job
from backoffice.actors import Actor, Source
from backoffice.redaction import redact
from claims import services
from claims.models import ApprovalRequest
from telegram_bridge import accounts
from telegram_bridge.fake_server import FakeTelegramServer
from telegram_bridge.models import PollerLease
from telegram_bridge.polling import LEASE_NAME

MANAGE_PY = Path(settings.BASE_DIR) / "manage.py"
APPROVER_CHAT = -1009000000001
STOP_DEADLINE = 15.0
LOG_TAIL = 40


class StepFailed(Exception):
    pass


class Command(BaseCommand):
    help = (
        "Run the approval flow end to end against a fake Telegram with a real worker and poller: "
        "claim, request, message, button press, decision, edit, archive; then a job, approved and "
        "run (dry) by a runner cluster."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--timeout",
            type=float,
            default=60.0,
            help="Seconds each step may take before the run fails (default 60).",
        )

    def handle(self, *args, timeout, **options):
        run = AcceptanceRun(self.stdout, self.style, timeout=timeout)
        try:
            run.execute()
        except StepFailed as error:
            run.show_logs()
            raise CommandError(f"Acceptance failed: {error}") from None
        except KeyboardInterrupt:
            raise CommandError("Acceptance interrupted.", returncode=130) from None
        finally:
            run.stop_all()


class AcceptanceRun:
    def __init__(self, stdout, style, *, timeout):
        self.stdout = stdout
        self.style = style
        self.timeout = timeout
        self.run_id = secrets.token_hex(4)
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"acceptance-{self.run_id}-"))
        self.processes = {}
        self.fake: FakeTelegramServer | None = None
        self.overrides = None
        self.started = time.monotonic()

    # --- The scenario ---------------------------------------------------------------------

    def execute(self):
        with self.step("database migrated"):
            call_command("migrate", interactive=False, verbosity=0)
        with self.step("fake Telegram Bot API started"):
            self.fake = FakeTelegramServer(token=settings.TELEGRAM_BOT_TOKEN or None).start()
            control = self.fake.control
        self.configure()
        with self.step(f"worker and poller started (queue {Conf.CLUSTER_NAME})"):
            self.spawn("worker", "qcluster")
            self.spawn("poller", "telegram_poll", "--timeout", "1")
            self.wait_for("the poller to take its lease", self.poller_running)
        approver, telegram_user = self.approver()
        agent = Actor(
            source=Source.CLI, user=self.requester(), label=f"acceptance-agent-{self.run_id}"
        )
        with self.step("claim acquired"):
            claim = services.claim(
                story=f"acceptance-{self.run_id}",
                todolist="release",
                agent_id=agent.label,
                fingerprint=agent.label,
                actor=agent,
            ).claim
        with self.step("approval requested"):
            approval = services.request_approval(
                kind="command",
                text=f"Acceptance run {self.run_id}: deploy <everything> & smile",
                agent_id=agent.label,
                claim_id=claim.pk,
                actor=agent,
            )
        with self.step("Telegram message with buttons arrived"):
            message = self.wait_for(
                "the request message at the fake Telegram",
                lambda: next(
                    (
                        sent
                        for sent in control.sent(chat_id=APPROVER_CHAT, method="sendMessage")
                        if approval.short_id in sent["payload"].get("text", "")
                    ),
                    None,
                ),
            )
            keyboard = message["payload"].get("reply_markup", {}).get("inline_keyboard")
            self.check(keyboard, "the request message has no inline keyboard")
        with self.step("approver pressed Approve"):
            control.press_button(
                APPROVER_CHAT, message["message_id"], telegram_user, f"approve:{approval.pk.hex}"
            )
        with self.step("request approved in the database"):
            self.wait_for("the approval", lambda: self.status_of(approval) != "pending")
            approval.refresh_from_db()
            self.check(
                approval.status == ApprovalRequest.Status.APPROVED,
                f"the request is {approval.status}, not approved",
            )
            self.check(
                approval.decided_by_id == approver.pk and approval.decision_source == "telegram",
                "the decision is not recorded as the approver's, from Telegram",
            )
        with self.step("button press answered"):
            self.wait_for(
                "answerCallbackQuery",
                lambda: control.sent(method="answerCallbackQuery"),
            )
        with self.step("Telegram message edited to show the decision"):
            self.wait_for(
                "the edit of the request message",
                lambda: [
                    sent
                    for sent in control.sent(chat_id=APPROVER_CHAT, method="editMessageText")
                    if sent["message_id"] == message["message_id"]
                    and "Approved by" in sent["payload"].get("text", "")
                ],
            )
        with self.step("request archived"):
            archived = services.archive(approval.pk, actor=Actor(source=Source.CLI, user=approver))
            self.check(archived.approval.status == ApprovalRequest.Status.ARCHIVED, "not archived")
        self.run_job(agent, approver)
        total = time.monotonic() - self.started
        self.stdout.write(self.style.SUCCESS(f"Acceptance passed in {total:.1f}s."))

    def run_job(self, agent, approver):
        """A one-step manifest, approved, run (dry) by the runner cluster, request executed."""
        with self.step(f"runner cluster started (queue {settings.AUTOMATION_QUEUE})"):
            self.spawn("runner", "qcluster", queue=settings.AUTOMATION_QUEUE)
        with self.step("job submitted and approved"):
            job = jobs.submit(
                manifest_data={
                    "name": f"acceptance-{self.run_id}",
                    "steps": [{"id": "hello", "argv": ["echo", "hello"]}],
                },
                actor=agent,
            )
            services.decide(
                job.approval_id, "approve", actor=Actor(source=Source.CLI, user=approver)
            )
        with self.step("job run (dry) and its request executed"):
            self.wait_for(
                "the request of the job to be executed",
                lambda: self.status_of(job.approval) == ApprovalRequest.Status.EXECUTED,
            )
            job.refresh_from_db()
            self.check(job.status == Job.Status.SUCCEEDED, f"the job {job.status}: {job.reason}")

    @property
    def started_fake(self) -> FakeTelegramServer:
        assert self.fake is not None, "the fake Bot API is started first"
        return self.fake

    def configure(self):
        """Point this process and the ones it starts at the fake Telegram, and give the run a queue
        and rate-limiter keys of its own.

        django-q2 reads its configuration once, at import, so the queue name is set on its
        ``Conf`` as well as in the settings; the subprocesses get it as ``Q_CLUSTER_NAME``.
        """
        queue = f"{settings.Q_CLUSTER['name']}-acceptance-{self.run_id}"
        self.overrides = override_settings(
            TELEGRAM_API_BASE_URL=self.started_fake.base_url,
            TELEGRAM_BOT_TOKEN=self.started_fake.token,
            TELEGRAM_APPROVER_CHAT_ID=APPROVER_CHAT,
            Q_CLUSTER={**settings.Q_CLUSTER, "name": queue},
            TELEGRAM_RATE_REDIS_PREFIX=f"{queue}:tg-rate",
            AUTOMATION_QUEUE=f"{queue}{settings.JOBS_QUEUE_SUFFIX}",
        )
        self.overrides.enable()
        Conf.PREFIX = Conf.CLUSTER_NAME = queue

    def requester(self):
        """A fresh user the run claims and asks as."""
        return get_user_model().objects.create_user(username=f"acceptance-agent-{self.run_id}")

    def approver(self):
        """A fresh approver, linked to a fresh Telegram user."""
        user = get_user_model().objects.create_user(
            username=f"acceptance-approver-{self.run_id}", is_staff=True
        )
        user.groups.add(Group.objects.get(name="Approvers"))
        telegram_user: dict[str, Any] = {
            "id": 8_000_000_000 + secrets.randbelow(10**9),
            "username": "acceptor",
        }
        accounts.link(user, telegram_user["id"], telegram_user["username"])
        return user, telegram_user

    # --- Processes --------------------------------------------------------------------------

    def spawn(self, name, *command, queue=""):
        env = {
            **os.environ,
            "TELEGRAM_API_BASE_URL": self.started_fake.base_url,
            "TELEGRAM_BOT_TOKEN": self.started_fake.token,
            "TELEGRAM_APPROVER_CHAT_ID": str(APPROVER_CHAT),
            "Q_CLUSTER_NAME": queue or Conf.CLUSTER_NAME,
            "TELEGRAM_RATE_REDIS_PREFIX": settings.TELEGRAM_RATE_REDIS_PREFIX,
            "PYTHONUNBUFFERED": "1",
        }
        with (self.log_dir / f"{name}.log").open("ab") as log:
            # A fixed command line: this interpreter, this project's manage.py, our arguments.
            self.processes[name] = subprocess.Popen(  # noqa: S603
                [sys.executable, str(MANAGE_PY), *command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=settings.BASE_DIR,
                start_new_session=True,
            )

    def poller_running(self):
        self.check_processes()
        process = self.processes["poller"]
        return PollerLease.objects.filter(name=LEASE_NAME, holder__endswith=f":{process.pid}")

    def check_processes(self):
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise StepFailed(f"the {name} exited early with code {process.returncode}")

    def stop_all(self):
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_DEADLINE)
                except subprocess.TimeoutExpired:
                    self.stdout.write(f"The {name} did not stop in time; killing it.")
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if self.fake is not None:
            self.fake.stop()
        if self.overrides is not None:
            self.overrides.disable()

    def show_logs(self):
        for name in self.processes:
            lines = (self.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
            self.stdout.write(f"--- last lines of the {name}'s output ({self.log_dir})")
            for line in lines[-LOG_TAIL:]:
                self.stdout.write(redact(line))

    # --- Steps ------------------------------------------------------------------------------

    @contextmanager
    def step(self, text):
        started = time.monotonic()
        try:
            yield
        except StepFailed:
            self.stdout.write(self.style.ERROR(f"✗ {text}"))
            raise
        self.stdout.write(f"✓ {text} ({time.monotonic() - started:.1f}s)")

    def wait_for(self, what, condition):
        deadline = time.monotonic() + self.timeout
        while True:
            result = condition()
            if result:
                return result
            self.check_processes()
            if time.monotonic() > deadline:
                raise StepFailed(f"timed out after {self.timeout:.0f}s waiting for {what}")
            time.sleep(0.1)

    @staticmethod
    def check(condition, message):
        if not condition:
            raise StepFailed(message)

    @staticmethod
    def status_of(approval):
        return ApprovalRequest.objects.filter(pk=approval.pk).values_list("status", flat=True)[0]
