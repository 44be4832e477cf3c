from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    name = "backoffice"

    def ready(self):
        # Connects the receivers that keep cached permissions current.
        from . import permission_cache  # noqa: F401
