from typing import Any

from backoffice.cli import JsonCommand

from ... import services


class Command(JsonCommand):
    help = (
        "Sign the audit chain's head and publish it now (the checkpoint file and the audit "
        "channel), as the schedule does every hour."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Publish even if the chain has not grown."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        made = services.checkpoint(
            actor=self.actor(label="audit_checkpoint"), force=options["force"]
        )
        if made is None:
            self.write_json({"published": False, "reason": "no new events since the last one"})
        else:
            self.write_json({"published": True, **services.checkpoint_values(made)})
