from backoffice.cli import JsonCommand
from claims import services
from claims.cli import claim_as_dict


class Command(JsonCommand):
    help = (
        "Claim the lease on STORY/TODOLIST, or refresh it if you already hold it. "
        "Exit 3 if someone else holds a live lease."
    )

    def add_arguments(self, parser):
        parser.add_argument("story")
        parser.add_argument("todolist")
        parser.add_argument("--owner", required=True, help="Who holds the lease (person or team).")
        parser.add_argument("--agent-id", required=True, help="The agent acting for the owner.")
        parser.add_argument("--fingerprint", required=True, help="The session fingerprint.")
        parser.add_argument(
            "--ttl", type=int, help="Lease length in seconds (default: CLAIM_DEFAULT_TTL)."
        )

    def handle(self, *args, **options):
        granted = services.claim(
            story=options["story"],
            todolist=options["todolist"],
            owner=options["owner"],
            agent_id=options["agent_id"],
            fingerprint=options["fingerprint"],
            ttl_seconds=options["ttl"],
            actor=self.actor(label=options["agent_id"]),
        )
        self.write_json(claim_as_dict(granted.claim, outcome=granted.outcome))
