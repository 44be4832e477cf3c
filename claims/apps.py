from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate


def _ensure_approvers_group(sender, apps=global_apps, **kwargs):
    # flush sends post_migrate without an app registry; migrate sends its own.
    from .groups import ensure_approvers_group

    ensure_approvers_group(apps)


class ClaimsConfig(AppConfig):
    name = "claims"
    verbose_name = "Claims and approvals"

    def ready(self):
        from .waiting import subscribe_to_decisions

        post_migrate.connect(_ensure_approvers_group, sender=self)
        subscribe_to_decisions()
