from backoffice.cli import JsonCommand
from backoffice.errors import InvalidInput
from telegram_bridge import dead_letters, outbox
from telegram_bridge.models import OutboundMessage


def message_as_dict(message):
    """What the outbox commands print about a message (never its payload: it may be personal)."""
    return {
        "id": message.pk,
        "method": message.method,
        "chat_id": message.chat_id,
        "status": message.status,
        "attempts": message.attempts,
        "requeues": message.requeues,
        "dedupe_key": message.dedupe_key,
        "last_status_code": message.last_status_code,
        "last_error": message.last_error,
        "next_attempt_at": message.next_attempt_at,
        "failed_at": message.failed_at,
        "sent_at": message.sent_at,
        "created_at": message.created_at,
    }


class Command(JsonCommand):
    help = "List outbound Telegram messages and requeue failed or dead ones."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        listing = actions.add_parser("list", help="List messages, newest first.")
        listing.add_argument("--status", choices=OutboundMessage.Status.values)
        listing.add_argument("--limit", type=int, default=100, help="At most this many (100).")
        listing.add_argument("--json", action="store_true", help="One JSON array on stdout.")

        requeuing = actions.add_parser("requeue", help="Send failed or dead messages again.")
        which = requeuing.add_mutually_exclusive_group(required=True)
        which.add_argument("ids", nargs="*", default=[], type=int, metavar="ID")
        which.add_argument("--all-dead", action="store_true", help="Every dead message.")
        requeuing.add_argument("--user", required=True, help="Who requeues (for the audit trail).")

        automatic = actions.add_parser(
            "auto-requeue", help="Requeue one batch of recently dead messages, within the limits."
        )
        automatic.add_argument(
            "--dry-run", action="store_true", help="Only print what would be requeued."
        )

    def handle(self, *args, **options):
        action = options["action"]
        if action == "list":
            self.list_messages(options)
        elif action == "requeue":
            self.requeue(options)
        else:
            self.auto_requeue(options)

    def list_messages(self, options):
        if options["limit"] < 1:
            raise InvalidInput({"limit": "must be at least 1"})
        messages = outbox.messages().order_by("-created_at", "-id")
        if options["status"]:
            messages = messages.filter(status=options["status"])
        messages = messages[: options["limit"]]
        if options["json"]:
            self.write_json([message_as_dict(message) for message in messages])
            return
        for message in messages:
            error = " ".join(message.last_error.split())[:80]
            self.stdout.write(
                f"#{message.pk:<6} {message.status:<7}  {message.method:<16} "
                f"chat {message.chat_id:<14} attempts {message.attempts} "
                f"requeues {message.requeues}  {message.created_at:%Y-%m-%d %H:%M}  {error}"
            )

    def requeue(self, options):
        """Requeue the given messages; a single id that cannot be requeued is an error."""
        actor = self.actor(user=self.get_user(options["user"]))
        ids = dead_letters.dead_message_ids() if options["all_dead"] else options["ids"]
        if len(ids) == 1 and not options["all_dead"]:
            changed = dead_letters.requeue(ids[0], actor=actor)
            self.stdout.write(f"#{ids[0]} requeued" if changed else f"#{ids[0]} is already queued")
            return
        self.stdout.write(str(dead_letters.requeue_many(ids, actor=actor)))

    def auto_requeue(self, options):
        if options["dry_run"]:
            candidates = list(dead_letters.requeue_candidates())
            self.stdout.write(f"{len(candidates)} would be requeued")
        else:
            candidates = dead_letters.auto_requeue()
            self.stdout.write(f"{len(candidates)} requeued")
        for message in candidates:
            self.stdout.write(
                f"#{message.pk} {message.method} to {message.chat_id}, "
                f"requeues {message.requeues}: {' '.join(message.last_error.split())[:80]}"
            )
