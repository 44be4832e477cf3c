from backoffice.cli import JsonCommand
from claims import services
from claims.cli import (
    add_lease_arguments,
    add_user_argument,
    claim_as_dict,
    lease_token,
)


class Command(JsonCommand):
    help = (
        "End your lease on claim ID. Releasing twice is fine. "
        "Exit 4 without the right lease token, 3 if --fencing-token is stale."
    )

    def add_arguments(self, parser):
        parser.add_argument("id", help="The claim id.")
        add_user_argument(parser)
        add_lease_arguments(parser)

    def handle(self, *args, **options):
        claim = services.release(
            options["id"],
            lease_token=lease_token(options),
            fencing_token=options["fencing_token"],
            actor=self.actor(user=self.acting_user(options)),
        )
        self.write_json(claim_as_dict(claim, outcome="released"))
