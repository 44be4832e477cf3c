import os
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Start the runner cluster: a django-q2 qcluster serving only the jobs queue "
        "(AUTOMATION_QUEUE, '<Q_CLUSTER_NAME>-jobs'). Delivery workers never run jobs; start as "
        "many of these as the machines meant to execute commands."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # django-q2 reads the queue name from the environment when it loads, so the cluster
        # starts in a fresh process (this one, replaced) with Q_CLUSTER_NAME set to it.
        manage_py = os.path.join(settings.BASE_DIR, "manage.py")
        env = {**os.environ, "Q_CLUSTER_NAME": settings.AUTOMATION_QUEUE}
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, manage_py, "qcluster"], env)  # noqa: S606
