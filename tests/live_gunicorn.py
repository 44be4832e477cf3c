"""gunicorn serving the test database, as deployed (``deploy/gunicorn.conf.py``), for tests that
need a real server: threads, processes and HTTP as production has them."""

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.telegram.worker import database_url, wait_for

PROJECT = Path(__file__).resolve().parents[1]
STOP_SECONDS = 10


def free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


@contextmanager
def live_gunicorn(log: Path, *, threads: int = 4, **env: str) -> Iterator[str]:
    """One gunicorn process of ``threads`` threads on the test database; yields its base URL.

    The server sees committed data only: tests using it need ``transactional_db``.
    """
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": str(threads),
        **env,
    }
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "backoffice.wsgi",
                "--config",
                "deploy/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=PROJECT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: server.poll() is not None or _answers(f"{base}/api/v1/"),
            timeout=60,
            message="gunicorn to answer",
        )
        assert server.poll() is None, log.read_text()
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            # Calls still waiting (a failed test's) would hold a graceful stop for their time.
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=STOP_SECONDS)


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=10)
    except requests.RequestException:
        return False
    return True
