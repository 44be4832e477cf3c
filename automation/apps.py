from django.apps import AppConfig


class AutomationConfig(AppConfig):
    name = "automation"
    verbose_name = "Automation runner"

    def ready(self) -> None:
        from claims import events

        from . import services

        # An approved request queues its job; a denied, expired or defaulted one settles it too.
        for settled in (events.ApprovalDecided, events.ApprovalDefaulted, events.ApprovalExpired):
            events.subscribe(settled, services.approval_settled)
