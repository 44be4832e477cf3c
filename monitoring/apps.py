from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Metrics, alerts and health checks: a channel-side app that reads what the others write.

    Nothing in the domain imports it; it reads outbox, inbound, approval, claim and audit rows.
    """

    name = "monitoring"
    verbose_name = "Monitoring"
