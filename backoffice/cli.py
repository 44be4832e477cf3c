"""What every ``manage.py`` command of the project shares: exit codes, JSON output, the CLI actor.

Commands run in CI, cron and pipes, so they print JSON on stdout, put errors as a JSON body on
stderr and tell callers what went wrong through the exit code. Domain errors become exit codes
here and nowhere else; an app's own errors subclass a shared one and inherit its code.
"""

import json
import sys
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.core.serializers.json import DjangoJSONEncoder

from .actors import Actor, Source
from .errors import Conflict, DomainError, InvalidInput, NotFound, NotPermitted
from .timestamps import iso_utc

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_FORBIDDEN = 4
EXIT_NOT_FOUND = 5

EXIT_CODES: dict[type[DomainError], int] = {
    InvalidInput: EXIT_USAGE,
    Conflict: EXIT_CONFLICT,
    NotPermitted: EXIT_FORBIDDEN,
    NotFound: EXIT_NOT_FOUND,
}


def exit_code_for(error: DomainError) -> int:
    """The exit code of a domain error; subclasses inherit their parent's code."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_ERROR


class JSONEncoder(DjangoJSONEncoder):
    """Django's encoder with the project's one timestamp format."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return iso_utc(o)
        return super().default(o)


def as_json(data: Any) -> str:
    return json.dumps(data, cls=JSONEncoder, ensure_ascii=False)


class JsonCommand(BaseCommand):
    """A command that talks JSON and turns domain errors into exit codes.

    Run from the command line, a ``DomainError`` is written to stderr as
    ``{"error": ..., "detail": ...}`` and the process exits with the code from ``EXIT_CODES``.
    Called in-process (``call_command``), the error propagates so the caller can handle it.
    """

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except DomainError as error:
            from_command_line = getattr(self, "_called_from_command_line", False)
            if not from_command_line or options.get("traceback"):
                raise
            self.stderr.write(as_json(error.as_dict()), style_func=lambda text: text)
            sys.exit(exit_code_for(error))

    def write_json(self, data: Any) -> None:
        self.stdout.write(as_json(data), style_func=lambda text: text)

    def actor(self, user: User | None = None, label: str = "") -> Actor:
        """The CLI actor: the named user, and a label such as the agent id."""
        return Actor(source=Source.CLI, user=user, label=label)

    def acting_user(self, options: dict[str, Any]) -> User:
        """The user a write acts as: --user, else CLI_SERVICE_USER; one is required."""
        username = options.get("user") or settings.CLI_SERVICE_USER
        if not username:
            raise InvalidInput({"user": "name the user you act as with --user"})
        return self.get_user(username)

    def get_user(self, username: str) -> User:
        """The active user named ``username``; an unknown name is bad input, not a crash."""
        User = get_user_model()
        user = User._default_manager.filter(
            **{User.USERNAME_FIELD: username}, is_active=True
        ).first()
        if user is None:
            raise InvalidInput({"user": f"no active user named {username!r}"})
        return user
