"""``manage.py telegram_poll``: receive updates by long polling instead of the webhook."""

import signal

from django.core.management.base import BaseCommand, CommandError

from telegram_bridge.polling import Poller, PollerBusy, PollingError

EXIT_BUSY = 3
EXIT_CANNOT_POLL = 4


class Command(BaseCommand):
    help = (
        "Long-poll Telegram's getUpdates and store every update for processing. One poller runs "
        "at a time; SIGTERM or Ctrl-C stops it after the current request."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="One getUpdates call, then exit.")
        parser.add_argument(
            "--process",
            action="store_true",
            help="Process each update here instead of queueing it for a worker.",
        )
        parser.add_argument(
            "--timeout", type=int, help="Seconds one getUpdates call waits for news."
        )
        parser.add_argument("--limit", type=int, help="Most updates one call returns (1-100).")

    def handle(self, *args, once, process, timeout, limit, **options):
        if timeout is not None and timeout < 0:
            raise CommandError("--timeout must be zero or more seconds.", returncode=2)
        if limit is not None and not 1 <= limit <= 100:
            raise CommandError("--limit must be between 1 and 100.", returncode=2)
        poller = Poller(timeout=timeout, limit=limit, process_inline=process)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: poller.stop())
        mode = "processing here" if process else "queueing for workers"
        self.stdout.write(f"Polling for Telegram updates ({mode}) as {poller.holder}.")
        try:
            poller.run(once=once)
        except PollerBusy as error:
            raise CommandError(str(error), returncode=EXIT_BUSY) from None
        except PollingError as error:
            raise CommandError(str(error), returncode=EXIT_CANNOT_POLL) from None
        self.stdout.write(f"Stopped; stored {poller.stored} new updates.")
