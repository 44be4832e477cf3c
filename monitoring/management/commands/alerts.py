from argparse import ArgumentParser
from typing import Any

from backoffice.cli import JsonCommand
from monitoring import alerts


class Command(JsonCommand):
    help = (
        "Check every alert rule once: send the alerts that fire and the ones that resolve to "
        "TELEGRAM_NOTIFY_CHAT_ID through the outbox, each audited. With --dry-run, change and "
        "send nothing and show what would be sent now. Prints one JSON object per rule."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Show what would be sent; send nothing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        outcomes = alerts.check(dry_run=options["dry_run"])
        self.write_json(
            {"dry_run": options["dry_run"], "rules": [outcome.as_dict() for outcome in outcomes]}
        )
