import json
import sys
from pathlib import Path
from typing import Any

from automation import selectors, services
from automation.models import Job
from automation.representation import job_data
from backoffice.cli import JsonCommand
from backoffice.errors import InvalidInput
from claims.cli import add_user_argument


class Command(JsonCommand):
    help = (
        "Submit a manifest as a job (it runs once approved, dry unless --live and "
        "AUTOMATION_ALLOW_EXECUTION), and list, show, cancel or re-run jobs. JSON on stdout."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        submitting = actions.add_parser("submit", help="Submit a manifest file ('-': stdin).")
        submitting.add_argument("file", help="The manifest, JSON (docs/automation.md).")
        submitting.add_argument(
            "--live",
            action="store_true",
            help="Run for real once approved (only where AUTOMATION_ALLOW_EXECUTION is on).",
        )
        submitting.add_argument("--agent-id", default="", help="A label: which agent submits.")
        add_user_argument(submitting)

        listing = actions.add_parser("list", help="List jobs, newest first.")
        listing.add_argument("--status", choices=Job.Status.values)
        listing.add_argument("--limit", type=int, default=100, help="At most this many (100).")

        showing = actions.add_parser("show", help="One job with its steps and their output.")
        showing.add_argument("id", help="The job id or at least 6 hex digits of it.")

        for action, what in (
            ("cancel", "Cancel a job that has not ended (its running step is killed)."),
            ("rerun", "Re-run a failed or cancelled job from its first unfinished step."),
        ):
            acting = actions.add_parser(action, help=what)
            acting.add_argument("id", help="The job id or at least 6 hex digits of it.")
            add_user_argument(acting)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "submit":
            job = services.submit(
                manifest_data=self.read_manifest(options["file"]),
                live=options["live"],
                agent_id=options["agent_id"],
                actor=self.actor(self.acting_user(options), label=options["agent_id"]),
            )
            self.write_json(job_data(job))
        elif action == "list":
            if options["limit"] < 1:
                raise InvalidInput({"limit": "must be at least 1"})
            jobs = selectors.jobs()
            if options["status"]:
                jobs = jobs.filter(status=options["status"])
            self.write_json([job_data(job) for job in jobs[: options["limit"]]])
        elif action == "show":
            self.write_json(job_data(selectors.get_job(options["id"])))
        elif action == "cancel":
            job, changed = services.cancel(
                options["id"], actor=self.actor(self.acting_user(options))
            )
            self.write_json({**job_data(job), "changed": changed})
        else:
            job = services.rerun(options["id"], actor=self.actor(self.acting_user(options)))
            self.write_json(job_data(job))

    def read_manifest(self, name: str) -> Any:
        """The manifest's JSON; a file that cannot be read or parsed is bad input."""
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise InvalidInput({"file": f"cannot read {name}: {error}"}) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidInput({"file": f"not JSON: {error}"}) from None
