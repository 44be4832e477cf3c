from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate


def create_cache_table(using, **kwargs):
    """Create the database cache table (when the cache is the database) on every migrate.

    The API's throttle counts in the cache; without REDIS_URL that is a table which is not a
    model, so migrate alone would not create it on a fresh clone. ``createcachetable`` skips
    tables that exist, so this is cheap and also covers switching from Redis later.
    """
    call_command("createcachetable", database=using, verbosity=0)


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "REST API"

    def ready(self):
        from . import schema  # noqa: F401  (registers the token scheme with drf-spectacular)

        post_migrate.connect(create_cache_table, sender=self)
