import csv
import json
from datetime import UTC, datetime, time
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from backoffice.cli import JsonCommand
from backoffice.errors import InvalidInput

from ... import selectors


def moment(name: str, value: str | None) -> datetime | None:
    """An ISO date (midnight UTC) or date-time (UTC unless it says otherwise); None if unset."""
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
        day = None if parsed else parse_date(value)
    except ValueError:
        parsed = day = None
    if day is not None:
        parsed = datetime.combine(day, time.min)
    if parsed is None:
        raise InvalidInput({name: f"{value!r} is not an ISO date or date-time"})
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


class Command(JsonCommand):
    help = (
        "Write the audit trail between two moments to stdout (or --output), streamed: NDJSON, "
        "one event a line with its hash and its predecessor's, which 'audit_verify --file' and "
        "audit/chain.py verify; or CSV for a spreadsheet."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--since", help="From this ISO date or date-time on (default: start).")
        parser.add_argument(
            "--until", help="Up to before this ISO date or date-time (default: now)."
        )
        parser.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
        parser.add_argument("--output", metavar="FILE", help="Write here instead of stdout.")

    def handle(self, *args: Any, **options: Any) -> None:
        since, until = moment("since", options["since"]), moment("until", options["until"])
        if since and until and since >= until:
            raise InvalidInput({"until": "must come after --since"})
        links = selectors.links_between(since, until)
        if options["output"]:
            try:
                with open(options["output"], "w", encoding="utf-8", newline="") as out:
                    self.write(out, links, options["format"])
            except OSError as error:
                raise InvalidInput({"output": str(error)}) from None
        else:
            self.write(self.stdout, links, options["format"])

    def write(self, out: Any, links: Any, form: str) -> None:
        if form == "csv":
            writer = csv.DictWriter(out, fieldnames=selectors.LINK_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for link in links:
                writer.writerow({**link, "details": json.dumps(link["details"], sort_keys=True)})
        else:
            for link in links:
                out.write(json.dumps(link, ensure_ascii=False) + "\n")
