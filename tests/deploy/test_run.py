"""``deploy/run`` keeps its development settings and stops cleanly on SIGINT and SIGTERM, also
when started in the background by a shell (which starts it with SIGINT ignored)."""

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.telegram.worker import wait_for

PROJECT = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE = 180.0


def free_port():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def children_of(pid):
    """The process ids whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_all_gone(groups):
    """Every process group the run started ends; a worker's last children may take a moment."""
    wait_for(
        lambda: not [pgid for pgid in groups if group_alive(pgid)],
        timeout=20,
        message=f"the process groups {groups} to end",
    )


def demo_job_statuses(home):
    """The approved demo job's status and its request's, read from the run's SQLite database."""
    with contextlib.closing(sqlite3.connect(home / "var" / "claimdesk.sqlite3", timeout=5)) as db:
        try:
            return db.execute(
                "SELECT job.status, request.status FROM automation_job job"
                " JOIN claims_approvalrequest request ON request.id = job.approval_id"
                " WHERE job.agent_id = 'release-bot-approved'"
            ).fetchall()
        except sqlite3.OperationalError:
            return []


class Run:
    """One ``deploy/run`` in ``home`` (its env file and var/), as a background job."""

    def __init__(self, home):
        self.home = home
        self.port = free_port()
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"DEBUG", "SECRET_KEY", "TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET"}
            and key not in {"DATABASE_URL", "REDIS_URL", "TELEGRAM_API_BASE_URL"}
        }
        self.env.update(
            ENV_FILE=str(home / ".env"),
            VAR_DIR=str(home / "var"),
            PORT=str(self.port),
            FAKE_TELEGRAM_PORT=str(free_port()),
            MCP_PORT=str(free_port()),
        )

    def start(self):
        # A shell's background job starts with SIGINT ignored; so does this one.
        self.output = (self.home / "run.out").open("ab")
        self.process = subprocess.Popen(
            [str(PROJECT / "deploy" / "run")],
            env=self.env,
            cwd=PROJECT,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        wait_for(
            lambda: answers(f"http://127.0.0.1:{self.port}/admin/login/") or self.exited(),
            timeout=STARTUP_DEADLINE,
            message="deploy/run to serve the admin",
        )
        assert self.process.poll() is None, self.log()
        return children_of(self.process.pid)

    def exited(self):
        return self.process.poll() is not None

    def stop(self, signum):
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=60)
        finally:
            self.output.close()

    def log(self):
        return (self.home / "run.out").read_text(errors="replace")

    def kill(self):
        """Stop a run the test left running (it failed half-way): SIGTERM first, so deploy/run
        stops the processes it started, which a SIGKILL would leave running on their own."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def run(tmp_path):
    started = []

    def make():
        started.append(Run(tmp_path))
        return started[-1]

    yield make
    for each in started:
        each.kill()


def test_run_stops_cleanly_on_sigint_and_sigterm_and_reuses_its_settings(run, tmp_path):
    first = run()
    children = first.start()
    settings = (tmp_path / ".env").read_text()
    password = (tmp_path / "var" / "admin-password").read_text()

    assert len(children) == 6, first.log()
    assert "SECRET_KEY=" in settings and "TELEGRAM_WEBHOOK_SECRET=" in settings
    wait_for(
        lambda: demo_job_statuses(tmp_path) == [("succeeded", "executed")],
        timeout=60,
        message="the runner cluster to take the approved demo job to executed",
    )
    assert first.stop(signal.SIGINT) == 0, first.log()
    assert_all_gone(children)
    logs = tmp_path / "var" / "log"
    # qcluster was told, not its whole group: it stops its processes in order (a SIGTERM to its
    # sentinel would kill that at once and leave qcluster waiting for it until the deadline).
    # The poller is not checked the same way: it may sit in a long getUpdates whose server stops
    # with it, and on a busy machine it is then stopped at the deadline, which is still clean.
    assert "stopping cluster processes" in (logs / "worker.log").read_text()
    assert "stopping cluster processes" in (logs / "runner.log").read_text()

    second = run()
    children = second.start()

    assert (tmp_path / ".env").read_text() == settings
    assert (tmp_path / "var" / "admin-password").read_text() == password
    assert f"password: {password.strip()}" in second.log()
    assert second.stop(signal.SIGTERM) == 0, second.log()
    assert_all_gone(children)


def test_manage_py_in_another_shell_uses_the_settings_run_wrote(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=1\nTELEGRAM_APPROVER_CHAT_ID=-4242\n")
    code = "from django.conf import settings; print(settings.TELEGRAM_APPROVER_CHAT_ID)"
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DEBUG", "TELEGRAM_APPROVER_CHAT_ID"}
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=PROJECT,
        env={**environment, "ENV_FILE": str(env_file), "VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert result.stdout.splitlines()[-1] == "-4242"
