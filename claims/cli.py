"""What the ``manage.py`` commands share: exit codes, JSON output and the CLI actor.

Commands run in CI, cron and pipes, so they print JSON on stdout, put errors as a JSON body on
stderr and tell callers what went wrong through the exit code. Domain errors become exit codes
here and nowhere else.
"""

import json
import os
import sys
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.core.serializers.json import DjangoJSONEncoder

from audit.actors import Actor, Source
from backoffice.timestamps import iso_utc

from .errors import (
    ClaimConflict,
    ClaimsError,
    Frozen,
    InvalidInput,
    InvalidTransition,
    NotFound,
    NotHolder,
    NotPermitted,
    StaleFence,
)
from .selectors import waiting_line

# Where the claim commands read the lease token when --lease-token is not given, so that it
# stays out of the process list and the shell history.
LEASE_TOKEN_ENV = "CLAIMDESK_LEASE_TOKEN"  # noqa: S105 - a variable name

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_FORBIDDEN = 4
EXIT_NOT_FOUND = 5

EXIT_CODES = {
    InvalidInput: EXIT_USAGE,
    ClaimConflict: EXIT_CONFLICT,
    Frozen: EXIT_CONFLICT,
    StaleFence: EXIT_CONFLICT,
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


class JSONEncoder(DjangoJSONEncoder):
    """Django's encoder with the project's one timestamp format."""

    def default(self, o):
        if isinstance(o, datetime):
            return iso_utc(o)
        return super().default(o)


def as_json(data):
    return json.dumps(data, cls=JSONEncoder, ensure_ascii=False)


def claim_as_dict(claim, **extra):
    """What the claim commands print about a claim; never anything that proves holdership."""
    return {
        "id": claim.pk,
        "story": claim.story,
        "todolist": claim.todolist,
        "holder": {
            "owner": claim.owner,
            "agent_id": claim.agent_id,
            "fingerprint": claim.fingerprint,
            "shown_as": claim.holder,
        },
        "fencing_token": claim.fencing_token,
        "live": claim.is_live(),
        "acquired_at": claim.acquired_at,
        "expires_at": claim.expires_at,
        "released_at": claim.released_at,
        "seconds_left": claim.seconds_left(),
        "ttl_seconds": claim.ttl_seconds,
        "version": claim.version,
        "frozen": claim.frozen,
        "frozen_reason": claim.frozen_reason,
        "waiting": [
            {"who": str(waiter), "since": waiter.joined_at} for waiter in waiting_line(claim)
        ],
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
        "agent_id": approval.agent_id,
        "claim": approval.claim_id,
        "created_at": approval.created_at,
        "expires_at": approval.expires_at,
        "decided_by": approval.decided_by.get_username() if approval.decided_by else None,
        "decided_at": approval.decided_at,
        "decision_source": approval.decision_source,
        "decision_note": approval.decision_note,
        **extra,
    }


def add_user_argument(parser):
    parser.add_argument(
        "--user",
        help="The username you act as (default: CLI_SERVICE_USER; one of the two is required).",
    )


def add_lease_arguments(parser):
    """The holder proves itself with its lease token, and may say which grant it holds."""
    parser.add_argument(
        "--lease-token",
        help=f"The lease token printed when the lease was granted (default: ${LEASE_TOKEN_ENV}).",
    )
    parser.add_argument(
        "--fencing-token",
        type=int,
        help="Refuse (exit 3) unless this is still the work item's current fencing token.",
    )


def lease_token(options):
    return options.get("lease_token") or os.environ.get(LEASE_TOKEN_ENV, "")


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
        """The CLI actor: the named user, and a label such as the agent id."""
        return Actor(source=Source.CLI, user=user, label=label)

    def acting_user(self, options):
        """The user a write acts as: --user, else CLI_SERVICE_USER; one is required."""
        username = options.get("user") or settings.CLI_SERVICE_USER
        if not username:
            raise InvalidInput({"user": "name the user you act as with --user"})
        return self.get_user(username)

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
