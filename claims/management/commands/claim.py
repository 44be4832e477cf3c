from backoffice.cli import JsonCommand
from backoffice.errors import InvalidInput
from claims import services
from claims.cli import (
    add_lease_arguments,
    add_user_argument,
    claim_as_dict,
    lease_token,
)


class Command(JsonCommand):
    help = (
        "Claim the lease on STORY TODOLIST (prints the lease token, once), or refresh it with "
        "--lease-token. Exit 3 if someone else holds a live lease or it is frozen. "
        "'claim check STORY TODOLIST --fencing-token N' exits 0 if N is the live lease's fencing "
        "token, 3 if it is stale."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "words",
            nargs="+",
            metavar="STORY TODOLIST",
            help="The work item (or: check STORY TODOLIST).",
        )
        add_user_argument(parser)
        parser.add_argument("--agent-id", help="A label: which agent of yours claims.")
        parser.add_argument("--fingerprint", default="", help="A label: session or host.")
        parser.add_argument(
            "--ttl", type=int, help="Lease length in seconds (default: CLAIM_DEFAULT_TTL)."
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="Wait in line this long for a busy work item, first come first served.",
        )
        add_lease_arguments(parser)

    def handle(self, *args, **options):
        words = options["words"]
        if len(words) == 3 and words[0] == "check":
            self.check_fence(words[1], words[2], options)
            return
        if len(words) != 2:
            raise InvalidInput({"words": "give STORY TODOLIST, or check STORY TODOLIST"})
        user = self.acting_user(options)
        granted = services.claim(
            story=words[0],
            todolist=words[1],
            agent_id=options["agent_id"] or user.get_username(),
            fingerprint=options["fingerprint"],
            ttl_seconds=options["ttl"],
            lease_token=lease_token(options),
            wait=options["wait"],
            actor=self.actor(user=user, label=options["agent_id"] or ""),
        )
        shown = {"lease_token": granted.lease_token} if granted.lease_token else {}
        self.write_json(claim_as_dict(granted.claim, outcome=granted.outcome, **shown))

    def check_fence(self, story, todolist, options):
        if options["fencing_token"] is None:
            raise InvalidInput({"fencing_token": "give --fencing-token to check"})
        username = options.get("user")
        claim = services.check_fence(
            story=story,
            todolist=todolist,
            fencing_token=options["fencing_token"],
            actor=self.actor(user=self.get_user(username) if username else None, label="check"),
        )
        self.write_json(claim_as_dict(claim, current=True))
