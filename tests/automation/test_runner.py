"""Live steps: real processes, their output and return codes, timeouts, retries, the environment."""

import json
import sys
import threading
import time
from pathlib import Path

import pytest
from model_bakery import baker

from automation import manifest, runner, services
from automation.models import Job
from backoffice.actors import Actor, Source
from claims import services as claims
from claims.models import ApprovalRequest, Claim
from tests.telegram.worker import wait_for

from .conftest import one_step

pytestmark = pytest.mark.django_db


def alive(pid):
    """Whether process ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def step(*argv, **fields):
    return manifest.Step.of({"id": "s", "argv": list(argv), **fields})


def test_a_live_run_of_harmless_commands_records_output_and_return_codes(
    live, submit, approve, run_job
):
    approve(
        submit(
            {
                "name": "harmless",
                "steps": [
                    {"id": "hello", "argv": ["echo", "hello", "world"]},
                    {
                        "id": "stderr",
                        "argv": ["sh", "-c", "echo oops >&2; exit 3"],
                        "allow_fail": True,
                    },
                    {"id": "cwd", "argv": ["sh", "-c", "pwd"], "cwd": "sub/dir"},
                ],
            },
            live=True,
        )
    )

    job = run_job()

    hello, stderr, cwd = job.steps.all()
    assert job.status == Job.Status.SUCCEEDED
    assert not job.dry_run
    assert (hello.returncode, hello.stdout, hello.status) == (0, "hello world\n", "succeeded")
    assert (stderr.returncode, stderr.stderr, stderr.status) == (3, "oops\n", "failed")
    assert cwd.stdout.strip().endswith("sub/dir")
    assert hello.duration_ms is not None
    assert job.approval.status == ApprovalRequest.Status.EXECUTED


def test_the_job_stops_at_the_first_failure_without_allow_fail(live, submit, approve, run_job):
    approve(
        submit(
            {
                "name": "stops",
                "steps": [
                    {"id": "fails", "argv": ["false"]},
                    {"id": "never", "argv": ["true"]},
                ],
            },
            live=True,
        )
    )

    job = run_job()

    fails, never = job.steps.all()
    assert job.status == Job.Status.FAILED
    assert "Step fails exited with 1" in job.reason
    assert fails.status == "failed"
    assert (never.status, never.attempts) == ("pending", 0)
    assert job.approval.status == ApprovalRequest.Status.EXECUTED


def test_a_failing_step_is_retried_until_it_succeeds(live, submit, approve, run_job, tmp_path):
    counter = tmp_path / "count"
    script = f"echo x >> {counter}; test $(wc -l < {counter}) -ge 3"
    approve(submit(one_step("sh", "-c", script, retries=3), live=True))

    job = run_job()

    only = job.steps.get()
    assert job.status == Job.Status.SUCCEEDED
    assert (only.attempts, only.returncode) == (3, 0)
    assert counter.read_text().count("x") == 3


def test_retries_run_out(live, submit, approve, run_job):
    approve(submit(one_step("false", retries=2), live=True))

    job = run_job()

    assert job.status == Job.Status.FAILED
    assert job.steps.get().attempts == 3


def test_a_timeout_kills_the_child_and_its_grandchildren(tmp_path, automation_settings):
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait"

    result = runner.execute(step("sh", "-c", script, timeout=1), tmp_path)

    assert result.timed_out
    assert result.returncode != 0
    assert "killed after the step's timeout of 1 s" in result.stderr
    grandchild, child = (int(line) for line in pids.read_text().split())
    wait_for(lambda: not alive(grandchild) and not alive(child), timeout=5, message="the group")


def test_a_cancel_kills_the_process_group(tmp_path, automation_settings):
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pids}; wait"
    stop = threading.Event()
    started = []

    def cancel_soon():
        wait_for(lambda: pids.exists() and pids.read_text().strip(), timeout=5, message="start")
        stop.set()

    threading.Thread(target=cancel_soon, daemon=True).start()
    began = time.monotonic()
    result = runner.execute(
        step("sh", "-c", script, timeout=60),
        tmp_path,
        on_start=started.append,
        should_stop=stop.is_set,
    )

    assert result.cancelled
    assert time.monotonic() - began < 30
    wait_for(
        lambda: not alive(int(pids.read_text())) and not alive(started[0]),
        timeout=5,
        message="the step's processes to end",
    )


def test_output_beyond_the_limit_is_cut_and_marked(tmp_path, automation_settings):
    automation_settings.AUTOMATION_OUTPUT_LIMIT = 100
    code = "import sys; sys.stdout.write('a' * 5000)"

    result = runner.execute(step(sys.executable, "-c", code), tmp_path)

    assert result.stdout.startswith("a" * 100)
    assert result.stdout.endswith("[output cut: 4900 more bytes not kept]")


def test_the_scrubbed_environment_holds_no_secret(tmp_path, automation_settings, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/x")  # pragma: allowlist secret
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", automation_settings.TELEGRAM_BOT_TOKEN)
    code = "import os, json; print(json.dumps(dict(os.environ)))"

    result = runner.execute(step(sys.executable, "-c", code, env={"GREETING": "hi"}), tmp_path)

    seen = json.loads(result.stdout)
    assert set(seen) == {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "GREETING"}
    secrets = {automation_settings.SECRET_KEY, automation_settings.TELEGRAM_BOT_TOKEN}
    assert not any(secret in result.stdout for secret in secrets)
    assert seen["PATH"] == automation_settings.AUTOMATION_PATH
    assert seen["HOME"] == str(tmp_path)


def test_a_missing_executable_is_a_failed_step_not_a_crash(tmp_path, automation_settings):
    result = runner.execute(step("no-such-command-here"), tmp_path)

    assert result.returncode == 127


def test_the_runner_holds_a_lease_on_the_work_item_and_releases_it(live, submit, approve, run_job):
    data = {
        **one_step("true"),
        "work_item": {"story": "release-2026", "todolist": "publish"},
    }
    approve(submit(data, live=True))

    job = run_job()

    claim = Claim.objects.get(story="release-2026", todolist="publish")
    assert job.status == Job.Status.SUCCEEDED
    assert job.fencing_token == claim.fencing_token
    assert claim.released_at is not None
    assert claim.owner == "release-bot"


def test_a_job_waits_while_its_work_item_is_held_by_someone_else(
    live, submit, approve, agent_actor
):
    claims.claim(story="docs", todolist="merge", agent_id="human", actor=agent_actor)
    job = approve(submit({**one_step("true"), "work_item": {"story": "docs", "todolist": "merge"}}))

    runner.run_next()

    job.refresh_from_db()
    assert job.status == Job.Status.QUEUED
    assert "docs/merge" in job.reason
    assert job.steps.get().attempts == 0


def test_a_lost_lease_fails_the_job_before_its_next_step(live, submit, approve):
    data = {
        "name": "fenced",
        "work_item": {"story": "docs", "todolist": "merge"},
        "steps": [{"id": "one", "argv": ["true"]}, {"id": "two", "argv": ["true"]}],
    }
    job = approve(submit(data, live=True))
    worker = "test:1"
    job = services.take_next(worker)
    lease = runner.Lease(job)
    lease.take()
    staff = baker.make("auth.User", is_superuser=True, is_staff=True, is_active=True)
    claims.force_release(lease.claim_id, actor=Actor(source=Source.ADMIN, user=staff), reason="x")

    status, reason = runner._steps(job, worker, Path("/tmp"), lease)

    assert status == Job.Status.FAILED
    assert "Lost the lease on docs/merge" in reason
