from django.db import models


class WorkerHeartbeat(models.Model):
    """The last time a worker on ``worker`` (host name) ran the heartbeat schedule.

    One row per host, overwritten on every beat, so the table stays as small as the fleet.
    """

    worker = models.CharField(max_length=200, unique=True)
    beat_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.worker} at {self.beat_at:%Y-%m-%d %H:%M:%S}"


class AlertState(models.Model):
    """Where one alert rule stands: firing or not, and when it last sent a message.

    The scheduled check locks the row while it decides, so two workers running the check at once
    send one alert, and the cooldown is measured from ``last_fired_at``.
    """

    rule = models.CharField(max_length=64, unique=True)
    firing = models.BooleanField(default=False)
    value = models.FloatField(null=True, blank=True, help_text="The figure at the last check.")
    last_fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.rule} ({'firing' if self.firing else 'ok'})"
