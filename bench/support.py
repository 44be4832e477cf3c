"""What the HTTP benchmarks share: paths, a free port, a throwaway database, the server's
environment and a gunicorn that is known to accept connections before the clock starts.

The scripts in ``bench/`` are run as ``.venv/bin/python bench/<script>.py``, which puts this
directory on ``sys.path``: they import from here with ``from support import ...``.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
# Deliberate fakes: the benchmarks never reach Telegram, but production settings demand values.
FAKE_BOT_TOKEN = "1234567890:AAFakeTokenForTheClaimdeskBenchmark0"  # pragma: allowlist secret
WEBHOOK_SECRET = "bench-webhook-secret"  # pragma: allowlist secret
GUNICORN_START_SECONDS = 60
# The PostgreSQL server the HTTP benchmarks make their throwaway databases on.
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
# A Redis database of the benchmarks' own, away from a deployment's (which uses database 0).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_answers(url):
    try:
        import redis

        return redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:
        return False


class ThrowawayPostgres:
    """A database of its own on the benchmark server, dropped afterwards.

    Entering it yields the database's URL.
    """

    def __init__(self, server_url, prefix="claimdesk_bench"):
        self.server_url = server_url
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"

    def _admin(self, statement):
        with psycopg.connect(self.server_url, autocommit=True) as connection:
            connection.execute(statement)

    def __enter__(self):
        self._admin(f'CREATE DATABASE "{self.name}"')
        parts = urlsplit(self.server_url)
        return urlunsplit(parts._replace(path=f"/{self.name}"))

    def __exit__(self, *exc_info):
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def benchmark_environment(*, database_url, redis_url, var_dir, cluster_name, **extra):
    """The server's environment: production settings with fake secrets and a queue of its own.

    No ``database_url`` means the settings' default SQLite file inside ``var_dir``; no
    ``redis_url`` means the database stands in for Redis.
    """
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "backoffice.settings",
        "DEBUG": "0",
        "SECRET_KEY": f"bench-{uuid.uuid4().hex}-{uuid.uuid4().hex}",
        "TELEGRAM_BOT_TOKEN": FAKE_BOT_TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "AUDIT_HMAC_KEY": f"bench-audit-{uuid.uuid4().hex}",
        "Q_CLUSTER_NAME": cluster_name,
        "VAR_DIR": str(var_dir),
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    for name, url in {"DATABASE_URL": database_url, "REDIS_URL": redis_url}.items():
        if url:
            env[name] = url
        else:
            env.pop(name, None)
    return env


def migrate(env):
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def setup_django(env):
    """Migrate the database of ``env``, then set Django up on it in this process, so a benchmark
    can make its users, tokens and requests through the services."""
    migrate(env)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def start_gunicorn(env, port, *, workers, threads, worker_class="gthread"):
    """Start gunicorn on 127.0.0.1:``port`` and return once it accepts connections.

    It runs in a session of its own so that ``stop_gunicorn`` reaches its workers too.
    """
    process = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"),
            "backoffice.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            worker_class,
            "--threads",
            str(threads),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_for_port(process, port)
    return process


def wait_for_port(process, port):
    """Return once the server ``process`` accepts connections on 127.0.0.1:``port``; stop it
    and exit if it dies or does not within ``GUNICORN_START_SECONDS``."""
    deadline = time.monotonic() + GUNICORN_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    stop_gunicorn(process)
    raise SystemExit(f"gunicorn did not start within {GUNICORN_START_SECONDS}s")


def stop_gunicorn(process):
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@contextlib.contextmanager
def throwaway_database(prefix):
    """A database built from the migrations for this run, dropped afterwards (a SQLite file in a
    temporary directory, or a PostgreSQL database named after the process); yields that
    directory, for logs. Call it after ``django.setup()``."""
    from django.db import connection

    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
        test_settings = connection.settings_dict.setdefault("TEST", {})
        if connection.vendor == "sqlite":
            test_settings["NAME"] = str(Path(tmp) / "bench.sqlite3")
        else:
            test_settings["NAME"] = f"{prefix.replace('-', '_')}_{os.getpid()}"
        old_name = connection.settings_dict["NAME"]
        connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        try:
            yield Path(tmp)
        finally:
            connection.creation.destroy_test_db(old_name, verbosity=0)


@contextlib.contextmanager
def postgresql_database(prefix):
    """For a benchmark run in-process on PostgreSQL: ``throwaway_database`` with query logging off
    (under ``DEBUG`` it would be measured too, and production runs without it); yields the
    database's name, or ``None`` (with a message on stderr) when the configured database is not
    PostgreSQL."""
    from django.conf import settings
    from django.db import connection

    if connection.vendor != "postgresql":
        print(
            "This benchmark measures PostgreSQL; set DATABASE_URL=postgres://... and run it again.",
            file=sys.stderr,
        )
        yield None
        return
    settings.DEBUG = False
    with throwaway_database(prefix):
        yield connection.settings_dict["NAME"]


def start_django(name):
    """Set up Django for the benchmark ``name`` in this process: a queue of its own, fake
    secrets (production settings demand them when DEBUG is off; the benchmarks talk to fakes
    only) and quiet logs, unless the environment says otherwise."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")
    os.environ.setdefault("Q_CLUSTER_NAME", f"{name}-{os.getpid()}")
    for setting, value in {
        "SECRET_KEY": f"{name}-{uuid.uuid4().hex}-{uuid.uuid4().hex}",
        "TELEGRAM_BOT_TOKEN": FAKE_BOT_TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }.items():
        os.environ.setdefault(setting, value)
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
