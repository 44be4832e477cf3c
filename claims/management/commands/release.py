from backoffice.cli import JsonCommand
from claims import services
from claims.cli import add_holder_arguments, claim_as_dict


class Command(JsonCommand):
    help = "End your lease on claim ID. Releasing twice is fine. Exit 4 if you are not the holder."

    def add_arguments(self, parser):
        parser.add_argument("id", help="The claim id.")
        add_holder_arguments(parser)

    def handle(self, *args, **options):
        claim = services.release(
            options["id"],
            agent_id=options["agent_id"] or "",
            fingerprint=options["fingerprint"] or "",
            actor=self.actor(label=options["agent_id"] or options["fingerprint"]),
        )
        self.write_json(claim_as_dict(claim, outcome="released"))
