from backoffice.cli import JsonCommand
from claims import services
from claims.cli import add_holder_arguments, claim_as_dict


class Command(JsonCommand):
    help = "Extend your lease on claim ID from now. Exit 4 if you are not the holder."

    def add_arguments(self, parser):
        parser.add_argument("id", help="The claim id.")
        add_holder_arguments(parser)
        parser.add_argument(
            "--ttl", type=int, help="New lease length in seconds (default: CLAIM_DEFAULT_TTL)."
        )

    def handle(self, *args, **options):
        claim = services.refresh(
            options["id"],
            agent_id=options["agent_id"] or "",
            fingerprint=options["fingerprint"] or "",
            ttl_seconds=options["ttl"],
            actor=self.actor(label=options["agent_id"] or options["fingerprint"]),
        )
        self.write_json(claim_as_dict(claim, outcome="refreshed"))
