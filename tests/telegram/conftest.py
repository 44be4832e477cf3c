"""Fixtures of the Telegram bridge tests."""

from dataclasses import dataclass

import pytest
from model_bakery import baker

from telegram_bridge.fake_server import FakeTelegramControl, FakeTelegramServer

from .updates import ALICE


@dataclass
class FakeTelegram:
    server: FakeTelegramServer
    control: FakeTelegramControl

    @property
    def base_url(self):
        return self.server.base_url

    @property
    def token(self):
        return self.server.token


@pytest.fixture
def fake_telegram(settings):
    """A fake Bot API on a free port, with the settings pointing the bridge at it.

    The token is the configured test token, so worker processes started with the same
    environment talk to this server too once they get ``TELEGRAM_API_BASE_URL``.
    """
    server = FakeTelegramServer(token=settings.TELEGRAM_BOT_TOKEN or None).start()
    settings.TELEGRAM_API_BASE_URL = server.base_url
    settings.TELEGRAM_BOT_TOKEN = server.token
    try:
        yield FakeTelegram(server=server, control=server.control)
    finally:
        server.stop()


@pytest.fixture
def qcluster(transactional_db, fake_telegram, tmp_path):
    """Real ``manage.py qcluster`` processes on this test's database, talking to the fake.

    ``qcluster.start(count=1, **env)`` starts clusters (``env`` overrides settings); all are
    stopped at teardown, and their output is in ``tmp_path`` for a failing test to show.
    """
    from tests.telegram.worker import Workers, worker_env

    workers = Workers(
        tmp_path, worker_env(base_url=fake_telegram.base_url, token=fake_telegram.token)
    )
    try:
        yield workers
    finally:
        workers.stop()


@pytest.fixture
def approver_account(approver):
    """The ``approver`` user linked to the Telegram user ``@alice`` (tests/telegram/updates.py)."""
    return baker.make(
        "telegram_bridge.TelegramAccount",
        telegram_user_id=ALICE["id"],
        telegram_username=ALICE["username"],
        user=approver,
    )


@pytest.fixture
def fake_telegram_unthrottled(settings, fake_telegram):
    """The fake Bot API with flood limits off, and our limiter as generous, for tests that
    deliver several messages to one chat in-process and care about what is sent, not when."""
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = 10_000
    settings.TELEGRAM_RATE_CHAT_PER_SECOND = 10_000
    settings.TELEGRAM_RATE_GROUP_PER_MINUTE = 600_000
    fake_telegram.control.configure_flood(enabled=False)
    return fake_telegram
