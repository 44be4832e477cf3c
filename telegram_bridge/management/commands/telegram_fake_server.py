"""Run the fake Telegram Bot API until SIGINT or SIGTERM (the demo, CI, benchmarks)."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from telegram_bridge.fake_server import FakeTelegramServer


class Command(BaseCommand):
    help = (
        "Serve a fake Telegram Bot API. Point TELEGRAM_API_BASE_URL at the URL it prints; it "
        "answers the bot token given with --token, or TELEGRAM_BOT_TOKEN."
    )
    # The fake needs no database, URLs or apps of the project; it must start even where they
    # are not set up (a CI job that only needs a Bot API).
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8081, help="0 picks a free port.")
        parser.add_argument("--token", help="Defaults to the TELEGRAM_BOT_TOKEN setting.")
        parser.add_argument(
            "--no-flood-limits",
            action="store_true",
            help="Never answer 429 on its own (injected faults still work).",
        )

    def handle(self, *args, host, port, token, no_flood_limits, **options):
        token = token or settings.TELEGRAM_BOT_TOKEN
        if not token:
            raise CommandError("No bot token: set TELEGRAM_BOT_TOKEN or pass --token.")
        extra = {"flood": None} if no_flood_limits else {}
        server = FakeTelegramServer(host=host, port=port, token=token, **extra)
        try:
            server.start()
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc}") from None

        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.set())
        # The token is a secret: print where the server is, never what it answers to.
        self.stdout.write(f"TELEGRAM_API_BASE_URL={server.base_url}")
        self.stdout.flush()
        self.stderr.write("Fake Telegram Bot API running; stop with Ctrl-C or SIGTERM.")
        stopping.wait()
        server.stop()
        self.stderr.write("Fake Telegram Bot API stopped.")
