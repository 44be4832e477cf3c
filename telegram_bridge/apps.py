from django.apps import AppConfig


class TelegramBridgeConfig(AppConfig):
    name = "telegram_bridge"
    verbose_name = "Telegram bridge"

    def ready(self) -> None:
        from audit.events import AuditCheckpointed
        from automation.events import JobEnded
        from claims import events

        from . import audit_channel, follow_ups, notifications

        # The approver chat hears of every new request, and its message follows every change.
        events.subscribe(events.ApprovalRequested, notifications.approval_requested)
        for changed in (
            events.ApprovalDecided,
            events.ApprovalExpired,
            events.ApprovalExecuted,
            events.ApprovalArchived,
            events.ApprovalDefaulted,
            events.VoteCounted,
        ):
            events.subscribe(changed, notifications.approval_changed)
        # A job's outcome shows on the message of the request that approved it.
        events.subscribe(JobEnded, notifications.job_ended)
        # The policy's reminders and escalations are new messages of their own.
        events.subscribe(events.ReminderDue, follow_ups.remind)
        events.subscribe(events.ApprovalEscalated, follow_ups.escalate)
        # The audit trail's checkpoints go to a channel of their own.
        events.subscribe(AuditCheckpointed, audit_channel.checkpoint_published)
