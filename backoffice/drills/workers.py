"""Drill of the worker side: every worker down while approvals keep coming."""

from datetime import timedelta

from django.utils import timezone
from django_q.tasks import async_task

from telegram_bridge import outbox

from .base import DrillRun, Status, drill

SWEEP_TASK = "telegram_bridge.tasks.sweep"
MESSAGES = 5


@drill(
    "worker-down",
    "docs/runbooks/worker-down.md",
    "No worker runs while messages are queued, and one died mid-send; a worker is started, the "
    "sweep takes the stuck row back, and every message goes out once.",
)
def worker_down(run: DrillRun) -> None:
    messages = run.enqueue(MESSAGES, "no-worker")
    stuck = messages[0]
    # A worker that died holding this row: "sending" since long before OUTBOX_SENDING_LEASE.
    outbox.messages().filter(pk=stuck.pk).update(
        status=Status.SENDING, updated_at=timezone.now() - timedelta(hours=1)
    )
    run.check(
        run.statuses(messages) == {Status.QUEUED: MESSAGES - 1, Status.SENDING: 1},
        "the messages did not wait for a worker",
    )
    run.step(f"no worker: {MESSAGES} messages wait in the outbox, one stuck in 'sending'")
    run.start_worker()
    async_task(SWEEP_TASK)
    run.step("runbook: a worker started on the same queue; the sweep queued")
    run.wait_for("every message to go out", run.all_are(messages, Status.SENT))
    run.check_all_sent_once(messages)
