from django.apps import AppConfig


class TelegramBridgeConfig(AppConfig):
    name = "telegram_bridge"
    verbose_name = "Telegram bridge"

    def ready(self):
        # The bridge listens to what claims publishes; claims never calls the bridge for these.
        from claims import events

        from . import notifications

        events.subscribe(events.VoteCounted, notifications.on_vote_counted)
        events.subscribe(events.DeadlinePassed, notifications.on_deadline_passed)
        events.subscribe(events.ReminderDue, notifications.on_reminder_due)
        events.subscribe(events.Escalated, notifications.on_escalated)
