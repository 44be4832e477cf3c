"""``manage.py drill NAME`` / ``--all``: rehearse the runbooks against a fake Telegram."""

import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from backoffice.drills import (  # noqa: F401 (they register drills)
    database,
    inbound,
    telegram,
    workers,
)
from backoffice.drills.base import REGISTRY, DrillFailed, DrillRun, drill_environment


class Command(BaseCommand):
    help = (
        "Run an on-call drill: reproduce a runbook's condition against a fake Telegram and the "
        "local services, follow the recovery steps, check nothing was lost. Development, CI and "
        "staging only (DEBUG=1)."
    )

    def add_arguments(self, parser):
        parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(sorted(REGISTRY)))
        parser.add_argument("--all", action="store_true", help="Run every drill.")
        parser.add_argument("--list", action="store_true", help="List the drills and exit.")
        parser.add_argument(
            "--timeout", type=float, default=60.0, help="Seconds each wait may take (60)."
        )

    def handle(self, *args, names, all, list, timeout, **options):
        if list:
            for drill in REGISTRY.values():
                self.stdout.write(f"{drill.name:<18} {drill.runbook}\n{'':<18} {drill.summary}")
            return
        unknown = sorted(set(names) - set(REGISTRY))
        if unknown or not (names or all) or (names and all):
            raise CommandError(
                f"Name drills or give --all; known drills: {', '.join(sorted(REGISTRY))}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else ""),
                returncode=2,
            )
        if not settings.DEBUG:
            raise CommandError(
                "Drills change data and talk to a fake Telegram: run them with DEBUG=1 on a "
                "development, CI or staging setup, never on production.",
                returncode=2,
            )
        call_command("migrate", interactive=False, verbosity=0)
        failed = []
        for name in sorted(REGISTRY) if all else names:
            if not self.run_drill(REGISTRY[name], timeout):
                failed.append(name)
        if failed:
            raise CommandError(f"Drills failed: {', '.join(failed)}")

    def run_drill(self, drill, timeout):
        self.stdout.write(f"Drill {drill.name} ({drill.runbook})")
        started = time.monotonic()
        run = DrillRun(drill.name, timeout)
        try:
            with drill_environment(run):
                drill.run(run)
        except DrillFailed as error:
            for line in run.report:
                self.stdout.write(f"  ✓ {line}")
            self.stdout.write(self.style.ERROR(f"  ✗ {error}"))
            return False
        for line in run.report:
            self.stdout.write(f"  ✓ {line}")
        self.stdout.write(
            self.style.SUCCESS(f"  passed in {time.monotonic() - started:.1f}s: nothing lost")
        )
        return True
