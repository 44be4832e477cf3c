from django.core.management.base import BaseCommand
from django.db import transaction
from django_q.models import Schedule

from backoffice.schedules import SCHEDULES


class Command(BaseCommand):
    help = "Create or update the django-q2 schedules the product needs (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        for entry in SCHEDULES:
            _, created = Schedule.objects.update_or_create(
                name=entry["name"],
                defaults={
                    "func": entry["func"],
                    "schedule_type": Schedule.MINUTES,
                    "minutes": entry["minutes"],
                    "repeats": -1,
                    "cluster": entry.get("cluster"),
                },
            )
            verb = "created" if created else "updated"
            self.stdout.write(
                f"{verb}: {entry['name']} ({entry['func']}, every {entry['minutes']} min)"
            )
