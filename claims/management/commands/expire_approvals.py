from backoffice.cli import JsonCommand
from claims import services


class Command(JsonCommand):
    help = (
        "Apply their policy's default outcome (expire, deny, or approve if nobody objected) to "
        "pending and postponed requests past their deadline, each audited. Prints the count and "
        "the ids as JSON."
    )

    def handle(self, *args, **options):
        expired = services.expire_overdue(actor=self.actor(label="expire_approvals"))
        self.write_json(
            {"expired": len(expired), "ids": [str(approval.pk) for approval in expired]}
        )
