"""Real ``manage.py qcluster`` processes for end-to-end tests, and polling with a deadline.

Workers are separate processes pointed at the test database (a file on SQLite, ``test_<name>`` on
PostgreSQL), so tests using them need ``transaction=True``: the data must be committed for the
workers to see it. Each cluster runs in its own process group, so a crash (``kill()``) takes the
whole cluster down at once, as a lost machine would, and ``stop()`` never leaves orphans behind.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

MANAGE_PY = Path(settings.BASE_DIR) / "manage.py"
STOP_DEADLINE = 15.0
# The Redis the tests may use (keys and queues under names of their own); never production's.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def database_url():
    """The URL of the database this test runs against, for processes started by the test."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{credentials}@{host}{port}/{db['NAME']}"


def wait_for(condition, *, timeout=30.0, interval=0.05, message="condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class Cluster:
    """One ``qcluster`` process group, with its output in ``log_dir``."""

    def __init__(self, name, env, log_dir):
        self.name = name
        self.env = env
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self.process = None

    def start(self):
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(MANAGE_PY), "qcluster"],
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=settings.BASE_DIR,
                start_new_session=True,
            )
        return self

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def kill(self):
        """SIGKILL the whole cluster: no cleanup, tasks in flight are lost mid-way."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self):
        """SIGTERM and wait for a clean exit; SIGKILL whatever is left after the deadline."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_DEADLINE)
        self.kill()

    def output(self):
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(
            errors="replace"
        )


class Workers:
    """Starts and stops clusters sharing one environment (database, fake Bot API, settings)."""

    def __init__(self, log_dir, base_env):
        self.log_dir = log_dir
        self.base_env = base_env
        self.clusters = []

    def start(self, count=1, **env):
        """Start ``count`` clusters; ``env`` overrides settings, e.g. ``OUTBOX_MAX_ATTEMPTS=3``."""
        started = []
        for _ in range(count):
            cluster = Cluster(
                f"qcluster-{len(self.clusters) + 1}",
                {**self.base_env, **{key: str(value) for key, value in env.items()}},
                self.log_dir,
            )
            self.clusters.append(cluster.start())
            started.append(cluster)
        return started

    def stop(self):
        for cluster in self.clusters:
            cluster.stop()

    def output(self):
        return "\n".join(f"--- {c.name}\n{c.output()}" for c in self.clusters)


# Retries and backoffs short enough for tests; a test overrides what it exercises.
FAST_RETRIES = {
    "TELEGRAM_RETRY_TOTAL": "2",
    "TELEGRAM_RETRY_BACKOFF": "0.05",
    "TELEGRAM_RETRY_BACKOFF_MAX": "0.2",
    "TELEGRAM_READ_TIMEOUT": "2",
    "OUTBOX_BACKOFF_BASE": "0.2",
    "OUTBOX_BACKOFF_MAX": "1",
}


def worker_env(*, base_url, token, **overrides):
    """The environment of a worker: this test's database, queue name and fake Bot API."""
    env = {
        **os.environ,
        **FAST_RETRIES,
        "DATABASE_URL": database_url(),
        "VAR_DIR": str(settings.VAR_DIR),
        "Q_CLUSTER_NAME": settings.Q_CLUSTER["name"],
        "Q_WORKERS": "1",
        "TELEGRAM_API_BASE_URL": base_url,
        "TELEGRAM_BOT_TOKEN": token,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    env.update({key: str(value) for key, value in overrides.items()})
    return env
