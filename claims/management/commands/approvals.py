import json
import sys

from backoffice.cli import JsonCommand
from backoffice.errors import DomainError, InvalidInput
from claims import selectors, services
from claims.cli import add_user_argument, approval_as_dict
from claims.models import ApprovalRequest, Decision
from claims.voting import tally

VOTES: dict[str, str] = {
    Decision.APPROVE: "Vote to approve a request (it is approved once its policy's quorum is met).",
    Decision.DENY: "Vote to deny a request (one deny denies it, unless its policy needs a quorum).",
}


class Command(JsonCommand):
    help = "List, request, decide and archive approval requests."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

        listing = actions.add_parser("list", help="List requests, newest first.")
        listing.add_argument("--status", choices=ApprovalRequest.Status.values)
        listing.add_argument("--kind", choices=ApprovalRequest.Kind.values)
        listing.add_argument("--limit", type=int, default=100, help="At most this many (100).")
        listing.add_argument("--json", action="store_true", help="One JSON array on stdout.")

        for decision in Decision.values:
            what = VOTES.get(decision, f"{decision.capitalize()} a request.")
            deciding = actions.add_parser(decision, help=what)
            deciding.add_argument("id", help="The request id or at least 6 hex digits of it.")
            deciding.add_argument("--user", required=True, help="The approver's username.")
            deciding.add_argument("--note", default="", help="Why, for the audit trail.")

        archiving = actions.add_parser("archive", help="Archive a finished request.")
        archiving.add_argument("id", help="The request id or at least 6 hex digits of it.")
        archiving.add_argument("--user", required=True, help="The archiving user's username.")

        reviewing = actions.add_parser(
            "review", help="Go through pending requests at a terminal: approve, deny or skip each."
        )
        reviewing.add_argument("--user", required=True, help="The approver's username.")

        requesting = actions.add_parser("request", help="Ask the approvers a question.")
        requesting.add_argument("--kind", required=True, choices=ApprovalRequest.Kind.values)
        requesting.add_argument("--text", required=True, help="What is asked, in plain words.")
        requesting.add_argument("--agent-id", default="", help="A label: which agent asks.")
        requesting.add_argument("--claim", help="The id of the claim this request is about.")
        requesting.add_argument("--payload", help="Machine-readable detail, as a JSON object.")
        add_user_argument(requesting)

    def handle(self, *args, **options):
        action = options["action"]
        if action == "list":
            self.list_requests(options)
        elif action == "request":
            self.request_approval(options)
        elif action == "review":
            self.review(self.get_user(options["user"]))
        elif action == "archive":
            approval = selectors.find_approval_by_prefix(options["id"])
            actor = self.actor(user=self.get_user(options["user"]))
            self.write_decided(services.archive(approval.pk, actor=actor))
        else:
            approval = selectors.find_approval_by_prefix(options["id"])
            actor = self.actor(user=self.get_user(options["user"]))
            decided = services.decide(approval.pk, action, actor=actor, note=options["note"])
            self.write_decided(decided)

    def list_requests(self, options):
        if options["limit"] < 1:
            raise InvalidInput({"limit": "must be at least 1"})
        approvals = ApprovalRequest.objects.select_related("decided_by").order_by("-created_at")
        if options["status"]:
            approvals = approvals.filter(status=options["status"])
        if options["kind"]:
            approvals = approvals.filter(kind=options["kind"])
        approvals = approvals[: options["limit"]]
        if options["json"]:
            self.write_json([approval_as_dict(approval) for approval in approvals])
            return
        for approval in approvals:
            waiting = approval.status in ApprovalRequest.AWAITING_DECISION
            self.stdout.write(
                f"{approval.short_id}  {approval.status:<9}  {approval.kind:<8}  "
                f"{approval.created_at:%Y-%m-%d %H:%M}  {approval.requester}: "
                f"{' '.join(approval.text.split())[:80]}"
                + (f"  [{tally(approval).summary()}]" if waiting else "")
            )

    def request_approval(self, options):
        payload = None
        if options["payload"] is not None:
            try:
                payload = json.loads(options["payload"])
            except json.JSONDecodeError as error:
                raise InvalidInput({"payload": f"is not valid JSON ({error.msg})"}) from None
        approval = services.request_approval(
            kind=options["kind"],
            text=options["text"],
            agent_id=options["agent_id"],
            claim_id=options["claim"],
            payload=payload,
            actor=self.actor(user=self.acting_user(options), label=options["agent_id"]),
        )
        self.write_json(approval_as_dict(approval))

    def write_decided(self, decided):
        self.write_json(approval_as_dict(decided.approval, changed=decided.changed))

    def review(self, user):
        """Show each pending request and ask what to do with it, deciding through the same
        service as every other channel. Refuses to run without a terminal, so that it can never
        sit waiting for an answer in CI or a pipe."""
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise InvalidInput(
                {"review": "needs a terminal; use 'approvals list' and 'approvals approve ID'"}
            )
        actor = self.actor(user=user)
        pending = list(selectors.pending_approvals().select_related("claim"))
        if not pending:
            self.stdout.write("No pending approval requests.")
            return
        for number, approval in enumerate(pending, start=1):
            self.stdout.write(self.describe(approval, number, len(pending)))
            answer = self.ask("[a]pprove, [d]eny, [s]kip or [q]uit? ", {"a", "d", "s", "q"})
            if answer in (None, "q"):
                break
            if answer == "s":
                continue
            note = self.ask("Note (optional): ")
            decision = "approve" if answer == "a" else "deny"
            try:
                decided = services.decide(approval.pk, decision, actor=actor, note=note or "")
            except DomainError as error:
                self.stdout.write(self.style.ERROR(f"Not decided: {error}"))
                continue
            self.stdout.write(self.style.SUCCESS(f"{approval.short_id} {decided.approval.status}."))

    @staticmethod
    def describe(approval, number, total):
        payload = json.dumps(approval.payload, indent=2, ensure_ascii=False)
        claim = f"\n  Claim:     {approval.claim.work_item}" if approval.claim else ""
        return (
            f"\n[{number}/{total}] {approval.short_id} ({approval.kind})\n"
            f"  Text:      {approval.text}\n"
            f"  Requester: {approval.requested_by}{claim}\n"
            f"  Deadline:  {approval.expires_at:%Y-%m-%d %H:%M %Z}\n"
            f"  Payload:   {payload}"
        )

    def ask(self, question, choices=None):
        """The answer to ``question`` (one of ``choices`` when given); None at end of input."""
        while True:
            self.stdout.write(question, ending="")
            self.stdout.flush()
            line = sys.stdin.readline()
            if not line:
                self.stdout.write("")
                return None
            answer = line.strip()
            if choices is None or answer.lower()[:1] in choices:
                return answer if choices is None else answer.lower()[:1]
