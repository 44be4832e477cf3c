"""Running a job on a worker of the runner cluster: its lease, its steps, their processes.

Each live step is a process started from its argv (never a shell), in a new session and so a
process group of its own, with a scrubbed environment (``AUTOMATION_PATH``, a home and temp
directory inside the job's own working directory, the step's ``env``; nothing of the worker's, so
no secret), in a temporary directory under ``AUTOMATION_WORK_ROOT``. A timeout or a cancel kills
the whole group, grandchildren included, and so does the end of the step: nothing a step started
outlives it. Output is kept up to ``AUTOMATION_OUTPUT_LIMIT`` bytes per stream, the rest cut and
marked. A dry run starts nothing and records each step as it would run with ``DRY_RUN``.

Every write goes through ``automation.services``; a background thread keeps the job's heartbeat
and the lease on its work item fresh, and the fencing token is checked before each step.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import connection

from backoffice.errors import DomainError
from claims import services as claims
from claims.errors import ClaimConflict, Frozen

from . import manifest, services
from .models import Job, JobStep

# How often a running step looks whether it was cancelled, and the job says it is alive.
CANCEL_POLL = 0.5
READ_CHUNK = 65536


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str
    duration_ms: int
    timed_out: bool = False
    cancelled: bool = False


class Capture(threading.Thread):
    """Reads one stream to its end, keeping the first ``limit`` bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.limit = stream, limit
        self.kept = bytearray()
        self.dropped = 0

    def run(self) -> None:
        with self.stream:
            while chunk := os.read(self.stream.fileno(), READ_CHUNK):
                room = self.limit - len(self.kept)
                self.kept += chunk[:room]
                self.dropped += max(0, len(chunk) - room)

    def text(self) -> str:
        text = self.kept.decode(errors="replace")
        if self.dropped:
            text += f"\n[output cut: {self.dropped} more bytes not kept]"
        return text


def scrubbed_env(step: manifest.Step, workdir: Path) -> dict[str, str]:
    """The whole environment of a step: nothing inherited from the worker."""
    return {
        "PATH": settings.AUTOMATION_PATH,
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        **step.env,
    }


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def execute(
    step: manifest.Step,
    workdir: Path,
    *,
    on_start: Callable[[int], None] = lambda pid: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Result:
    """Run one live step to its end, its timeout, or a cancel; never raises for the step's
    own failures (an executable not found is return code 127, as in a shell)."""
    began = time.monotonic()
    executable = step.argv[0]
    if os.sep not in executable:
        executable = shutil.which(executable, path=settings.AUTOMATION_PATH) or ""
    cwd = workdir / step.cwd
    if not executable:
        return Result(127, "", f"{step.argv[0]}: not found on AUTOMATION_PATH", 0)
    cwd.mkdir(parents=True, exist_ok=True)
    try:
        process = subprocess.Popen(  # noqa: S603 - argv from an approved, allowlisted manifest
            step.argv,
            executable=executable,
            cwd=cwd,
            env=scrubbed_env(step, workdir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as error:
        return Result(126, "", f"{step.argv[0]}: {error.strerror}", 0)
    assert process.stdout is not None and process.stderr is not None
    limit = settings.AUTOMATION_OUTPUT_LIMIT
    captures = [Capture(process.stdout, limit), Capture(process.stderr, limit)]
    for capture in captures:
        capture.start()
    on_start(process.pid)
    deadline = began + step.timeout
    timed_out = cancelled = False
    try:
        while process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=min(CANCEL_POLL, max(0.0, deadline - time.monotonic())))
            if process.poll() is not None:
                break
            if time.monotonic() >= deadline:
                timed_out = True
                break
            if should_stop():
                cancelled = True
                break
    finally:
        # The step's leftovers go with it, on a timeout or a cancel and after a normal end.
        kill_group(process.pid)
        process.wait()
    for capture in captures:
        capture.join()
    out, err = (capture.text() for capture in captures)
    if timed_out:
        err += f"\n[killed after the step's timeout of {step.timeout} s]"
    return Result(
        returncode=process.returncode,
        stdout=out,
        stderr=err,
        duration_ms=int((time.monotonic() - began) * 1000),
        timed_out=timed_out,
        cancelled=cancelled,
    )


# A dry run's every step: as it would run (the step's row keeps argv, env names and timeout).
DRY_RUN = Result(0, services.DRY_RUN_OUTPUT, "", 0)


class Lease:
    """The lease a job holds on its work item while it runs: claimed as the job's submitter, kept
    fresh by the heartbeat, released at the end. The lease token lives in this process only; a
    resumed job claims the work item again."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.actor = services.runner_actor(job)
        self.claim_id: int | None = None
        self.token = ""
        self.fencing_token: int | None = None
        self.lost = ""

    def take(self) -> None:
        granted = claims.claim(
            story=self.job.story,
            todolist=self.job.todolist,
            agent_id=f"job-{self.job.short_id}",
            fingerprint=socket.gethostname(),
            ttl_seconds=settings.AUTOMATION_LEASE_TTL,
            actor=self.actor,
        )
        self.claim_id = granted.claim.pk
        self.token = granted.lease_token
        self.fencing_token = granted.claim.fencing_token

    def refresh(self) -> None:
        if self.claim_id is None or self.lost:
            return
        try:
            claims.refresh(
                self.claim_id,
                lease_token=self.token,
                fencing_token=self.fencing_token,
                actor=self.actor,
            )
        except DomainError as error:
            self.lost = error.message

    def check(self) -> str:
        """Why the job no longer holds its work item, or "" while it does (the fencing check)."""
        if self.claim_id is None:
            return ""
        if self.lost:
            return self.lost
        try:
            claims.check_fence(
                story=self.job.story,
                todolist=self.job.todolist,
                fencing_token=self.fencing_token,
                actor=self.actor,
            )
        except DomainError as error:
            self.lost = error.message
        return self.lost

    def release(self) -> None:
        if self.claim_id is None or self.lost:
            return
        with contextlib.suppress(DomainError):
            claims.release(
                self.claim_id,
                lease_token=self.token,
                fencing_token=self.fencing_token,
                actor=self.actor,
            )


class Heartbeat(threading.Thread):
    """Says the worker is alive and refreshes the lease, until stopped."""

    def __init__(self, job: Job, worker: str, lease: Lease) -> None:
        super().__init__(daemon=True)
        self.job, self.worker, self.lease = job, worker, lease
        self.stopped = threading.Event()

    def run(self) -> None:
        beat = settings.AUTOMATION_HEARTBEAT_TIMEOUT / 4
        renew = settings.AUTOMATION_LEASE_TTL / 3
        last_beat = last_renew = time.monotonic()
        try:
            while not self.stopped.wait(min(beat, renew) / 2):
                now = time.monotonic()
                if now - last_beat >= beat:
                    services.heartbeat(self.job, self.worker)
                    last_beat = now
                if now - last_renew >= renew:
                    self.lease.refresh()
                    last_renew = now
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_next() -> Job | None:
    """Take up the next job that may run and run it to its end, then the next, until none may
    run now; the first job run, or None. A job that waited for a free slot is so taken up by the
    worker whose job freed it."""
    worker = worker_name()
    first = None
    while (job := services.take_next(worker)) is not None:
        first = first or job
        with contextlib.suppress(services.LostJob):
            if not run(job, worker):
                break  # it waits for its work item: the sweep takes it up again later
    return first


def run(job: Job, worker: str) -> bool:
    """Run ``job`` (just started by ``worker``) from its first unfinished step to its end; False
    when it went back to the queue because someone else holds its work item."""
    lease = Lease(job)
    if job.story:
        try:
            lease.take()
        except (ClaimConflict, Frozen) as busy:
            services.wait_for_work_item(job, worker, busy.message)
            return False
        services.hold_lease(job, worker, lease.fencing_token or 0)
    heartbeat = Heartbeat(job, worker, lease)
    heartbeat.start()
    settings.AUTOMATION_WORK_ROOT.mkdir(parents=True, exist_ok=True)
    workdir = Path(
        tempfile.mkdtemp(prefix=f"job-{job.short_id}-", dir=settings.AUTOMATION_WORK_ROOT)
    )
    try:
        status, reason = _steps(job, worker, workdir, lease)
    finally:
        heartbeat.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        lease.release()
    services.finish(job, worker, status, reason)
    return True


def _steps(job: Job, worker: str, workdir: Path, lease: Lease) -> tuple[str, str]:
    """Run the steps not yet finished; the job's outcome and why."""
    specs = manifest.steps(job.manifest)
    last_look = [0.0]

    def should_stop() -> bool:
        if time.monotonic() - last_look[0] < CANCEL_POLL:
            return False
        last_look[0] = time.monotonic()
        return services.cancel_requested(job)

    for step in job.steps.order_by("position"):
        if step.status in JobStep.DONE:
            continue
        spec = specs[step.position]
        while True:
            if services.cancel_requested(job):
                return Job.Status.CANCELLED, "Cancelled while running."
            lost = lease.check()
            if lost:
                return Job.Status.FAILED, f"Lost the lease on {job.work_item}: {lost}"
            step = services.step_started(job, step, worker, dry_run=job.dry_run)
            if job.dry_run:
                result = DRY_RUN
            else:
                result = execute(
                    spec,
                    workdir,
                    on_start=partial(services.step_pid, step),
                    should_stop=should_stop,
                )
            step = services.step_finished(
                job,
                step,
                worker,
                returncode=result.returncode,
                stdout=result.stdout,
                stderr=result.stderr,
                duration_ms=result.duration_ms,
                timed_out=result.timed_out,
                cancelled=result.cancelled,
            )
            if result.cancelled:
                return Job.Status.CANCELLED, f"Cancelled during step {step.step_id}."
            if result.returncode == 0 or not step.attempts_left:
                break
            _pause(_backoff(step.attempts), should_stop)
        if step.status == JobStep.Status.FAILED and not step.allow_fail:
            why = "timed out" if step.timed_out else f"exited with {step.returncode}"
            return Job.Status.FAILED, f"Step {step.step_id} {why}."
    return Job.Status.SUCCEEDED, ""


def _backoff(attempt: int) -> float:
    base = settings.AUTOMATION_RETRY_BACKOFF * 2 ** (attempt - 1)
    return float(min(base, settings.AUTOMATION_RETRY_BACKOFF_MAX))


def _pause(seconds: float, should_stop: Callable[[], bool]) -> None:
    """Wait before a retry, but no longer than a cancel takes to be seen."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not should_stop():
        time.sleep(min(CANCEL_POLL, max(0.0, deadline - time.monotonic())))
