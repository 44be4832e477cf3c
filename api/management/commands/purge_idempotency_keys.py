from django.core.management.base import BaseCommand

from api.idempotency import purge_expired


class Command(BaseCommand):
    help = (
        "Delete Idempotency-Keys older than API_IDEMPOTENCY_TTL. Expired keys are also replaced "
        "when a client reuses them; run this from cron (e.g. hourly) to keep the table small."
    )

    def handle(self, *args, **options):
        self.stdout.write(f"Deleted {purge_expired()} expired idempotency keys.")
