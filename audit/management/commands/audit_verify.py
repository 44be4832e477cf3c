from typing import Any

from backoffice.cli import JsonCommand
from backoffice.errors import InvalidInput

from ... import chain, selectors, services
from ...errors import ChainBroken


class Command(JsonCommand):
    help = (
        "Walk the audit hash chain (or an NDJSON export of it) and check it against the published "
        "checkpoints. Prints a JSON report; exits 1 at the first broken link, naming its sequence "
        "number, time and what differs."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--since-checkpoint",
            metavar="SEQ|latest",
            help="Start at a validly signed checkpoint instead of the first event: everything "
            "before it is vouched for by the checkpoint.",
        )
        parser.add_argument(
            "--checkpoints",
            metavar="FILE",
            help="Published checkpoints, one JSON line each (default: AUDIT_CHECKPOINT_FILE).",
        )
        parser.add_argument(
            "--file", metavar="EXPORT", help="Verify this NDJSON export instead of the database."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoints = selectors.published_checkpoints(options["checkpoints"])
        if options["file"]:
            if options["since_checkpoint"]:
                raise InvalidInput({"since_checkpoint": "not with --file"})
            report = self.verify_export(options["file"], checkpoints)
        else:
            since = options["since_checkpoint"]
            start = selectors.choose_checkpoint(checkpoints, since) if since else None
            report = selectors.verify(checkpoints, since=start).as_dict()
        self.write_json(report)
        if not report["ok"]:
            raise ChainBroken(report)

    def verify_export(self, path: str, checkpoints: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            with open(path, encoding="utf-8") as file:
                return chain.verify_export(
                    services.hmac_key(), chain.read_ndjson(file), checkpoints
                )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InvalidInput({"file": f"{path}: {error}"}) from None
