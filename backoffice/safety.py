"""Refusing to run in production with missing or placeholder secrets.

A process that starts with an empty ``SECRET_KEY`` or the bot token copied from ``.env.example``
fails later, and in confusing ways (sessions that do not survive a restart, a webhook anyone can
call). Settings call ``require_secrets`` last, so such a process stops at once and names the
variable to fix.
"""

from django.core.exceptions import ImproperlyConfigured

# Values that only ever appear in examples and development defaults, compared case-insensitively.
# Keep the secrets' values in .env.example among them.
PLACEHOLDERS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "dev-only-insecure-key",
        "placeholder",
        "secret",
        "todo",
        "xxx",
    }
)
# Django's startproject writes keys with this prefix; they are public by construction.
PLACEHOLDER_PREFIXES = ("django-insecure-",)


def is_placeholder(value):
    value = value.strip().lower()
    return value in PLACEHOLDERS or value.startswith(PLACEHOLDER_PREFIXES)


def require_secrets(secrets, *, debug):
    """Raise ``ImproperlyConfigured`` for the first of ``secrets`` (name to value) not set for real.

    With ``debug`` on nothing is required: a laptop runs with development defaults.
    """
    if debug:
        return
    for name, value in secrets.items():
        if not value or not value.strip():
            raise ImproperlyConfigured(f"{name} is not set; it is required when DEBUG is off.")
        if is_placeholder(value):
            raise ImproperlyConfigured(
                f"{name} is set to a placeholder value; set a real secret, "
                "it is required when DEBUG is off."
            )
