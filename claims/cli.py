"""What the ``manage.py`` commands share: exit codes, JSON output and the CLI actor.

Commands run in CI, cron and pipes, so they print JSON on stdout, put errors as a JSON body on
stderr and tell callers what went wrong through the exit code. Domain errors become exit codes
here and nowhere else.
"""

import json
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.core.serializers.json import DjangoJSONEncoder

from audit.actors import Actor, Source

from .errors import (
    ClaimConflict,
    ClaimsError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    NotHolder,
    NotPermitted,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_FORBIDDEN = 4
EXIT_NOT_FOUND = 5

EXIT_CODES = {
    InvalidInput: EXIT_USAGE,
    ClaimConflict: EXIT_CONFLICT,
    InvalidTransition: EXIT_CONFLICT,
    NotHolder: EXIT_FORBIDDEN,
    NotPermitted: EXIT_FORBIDDEN,
    NotFound: EXIT_NOT_FOUND,
}


def exit_code_for(error):
    """The exit code of a domain error; subclasses inherit their parent's code."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_ERROR


def as_json(data):
    return json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False)


def claim_as_dict(claim, **extra):
    """What the claim commands print about a claim."""
    return {
        "id": claim.pk,
        "story": claim.story,
        "todolist": claim.todolist,
        "holder": {
            "owner": claim.owner,
            "agent_id": claim.agent_id,
            "fingerprint": claim.fingerprint,
        },
        "live": claim.is_live(),
        "acquired_at": claim.acquired_at,
        "expires_at": claim.expires_at,
        "released_at": claim.released_at,
        "seconds_left": claim.seconds_left(),
        "ttl_seconds": claim.ttl_seconds,
        "version": claim.version,
        "previous_holder": {
            "owner": claim.previous_owner,
            "agent_id": claim.previous_agent_id,
        },
        **extra,
    }


def approval_as_dict(approval, **extra):
    """What the approval commands print about a request."""
    return {
        "id": str(approval.pk),
        "short_id": approval.short_id,
        "kind": approval.kind,
        "status": approval.status,
        "text": approval.text,
        "requested_by": approval.requested_by,
        "claim": approval.claim_id,
        "created_at": approval.created_at,
        "expires_at": approval.expires_at,
        "decided_by": approval.decided_by.get_username() if approval.decided_by else None,
        "decided_at": approval.decided_at,
        "decision_source": approval.decision_source,
        "decision_note": approval.decision_note,
        **extra,
    }


def add_holder_arguments(parser):
    """The holder proves itself with its agent id or its fingerprint."""
    holder = parser.add_mutually_exclusive_group(required=True)
    holder.add_argument("--agent-id", help="The holder's agent id.")
    holder.add_argument("--fingerprint", help="The holder's session fingerprint.")


class ClaimsCommand(BaseCommand):
    """A command that talks JSON and turns domain errors into exit codes.

    Run from the command line, a ``ClaimsError`` is written to stderr as
    ``{"error": ..., "detail": ...}`` and the process exits with the code from ``EXIT_CODES``.
    Called in-process (``call_command``), the error propagates so the caller can handle it.
    """

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except ClaimsError as error:
            if not self._called_from_command_line or options.get("traceback"):
                raise
            self.stderr.write(as_json(error.as_dict()), style_func=lambda text: text)
            sys.exit(exit_code_for(error))

    def write_json(self, data):
        self.stdout.write(as_json(data), style_func=lambda text: text)

    def actor(self, user=None, label=""):
        """The CLI actor: the named user, or a label such as the agent id."""
        return Actor(source=Source.CLI, user=user, label=label)

    def get_user(self, username):
        """The active user named ``username``; an unknown name is bad input, not a crash."""
        user = (
            get_user_model()
            ._default_manager.filter(**{get_user_model().USERNAME_FIELD: username}, is_active=True)
            .first()
        )
        if user is None:
            raise InvalidInput({"user": f"no active user named {username!r}"})
        return user
