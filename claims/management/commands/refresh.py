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
        "Extend your lease on claim ID from now (keeping its TTL unless --ttl). "
        "Exit 4 without the right lease token, 3 if --fencing-token is stale."
    )

    def add_arguments(self, parser):
        parser.add_argument("id", help="The claim id.")
        add_user_argument(parser)
        add_lease_arguments(parser)
        parser.add_argument(
            "--ttl", type=int, help="New lease length in seconds (default: the current TTL)."
        )

    def handle(self, *args, **options):
        claim = services.refresh(
            options["id"],
            lease_token=lease_token(options),
            fencing_token=options["fencing_token"],
            ttl_seconds=options["ttl"],
            actor=self.actor(user=self.acting_user(options)),
        )
        self.write_json(claim_as_dict(claim, outcome="refreshed"))
