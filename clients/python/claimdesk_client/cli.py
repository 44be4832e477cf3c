"""``claimdesk``: the API from a shell or a CI job, with the exit codes of the server's commands.

Configured by the environment: ``CLAIMDESK_URL`` and ``CLAIMDESK_TOKEN`` (an API token), and
``CLAIMDESK_LEASE_TOKEN`` for refresh and release, which keeps it out of the process list and the
shell history. Prints one JSON document on stdout; an error is a JSON body on stderr and an exit
code: 2 invalid input, 3 conflict (and a request denied or expired), 4 not permitted or not the
holder, 5 not found, 6 still undecided when ``wait`` ran out of time, 1 anything else.
``job submit FILE`` sends a manifest (a JSON file, ``-`` for stdin) and ``job show ID`` prints a
job with its steps.
"""

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

from .client import Client
from .errors import (
    ClaimdeskError,
    Conflict,
    Denied,
    Expired,
    Forbidden,
    Invalid,
    NotApproved,
    NotFound,
    TimedOut,
    Unauthorized,
)

URL_ENV = "CLAIMDESK_URL"
TOKEN_ENV = "CLAIMDESK_TOKEN"  # noqa: S105 - a variable name
LEASE_TOKEN_ENV = "CLAIMDESK_LEASE_TOKEN"  # noqa: S105 - a variable name
AGENT_ID_ENV = "CLAIMDESK_AGENT_ID"

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3
EXIT_FORBIDDEN = 4
EXIT_NOT_FOUND = 5
EXIT_UNDECIDED = 6

# Most specific first.
EXIT_CODES: list[tuple[type[Exception], int]] = [
    (Invalid, EXIT_USAGE),
    (Conflict, EXIT_CONFLICT),
    (Denied, EXIT_CONFLICT),
    (Expired, EXIT_CONFLICT),
    (TimedOut, EXIT_UNDECIDED),
    (NotApproved, EXIT_CONFLICT),
    (Unauthorized, EXIT_FORBIDDEN),
    (Forbidden, EXIT_FORBIDDEN),
    (NotFound, EXIT_NOT_FOUND),
]


class UsageError(Exception):
    """The command line or the environment is incomplete."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        client = Client(_env(URL_ENV), _env(TOKEN_ENV), agent_id=os.environ.get(AGENT_ID_ENV, ""))
        with client:
            _print(options.run(client, options))
    except UsageError as error:
        return _fail(EXIT_USAGE, {"error": "invalid", "detail": str(error)})
    except NotApproved as error:
        _print(error.approval)
        outcome = type(error).__name__.lower()
        return _fail(_exit_code(error), {"error": outcome, "detail": str(error)})
    except ClaimdeskError as error:
        return _fail(_exit_code(error), error.body)
    except requests.RequestException as error:
        return _fail(EXIT_ERROR, {"error": "unreachable", "detail": str(error)})
    return 0


def _exit_code(error: Exception) -> int:
    return next((code for cls, code in EXIT_CODES if isinstance(error, cls)), EXIT_ERROR)


def _env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise UsageError(f"set {name}")
    return value


def _lease_token(options: argparse.Namespace) -> str:
    token = options.lease_token or os.environ.get(LEASE_TOKEN_ENV, "")
    if not token:
        raise UsageError(f"give --lease-token or set {LEASE_TOKEN_ENV}")
    return token


def _print(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


def _fail(code: int, body: dict[str, Any]) -> int:
    sys.stderr.write(json.dumps(body, ensure_ascii=False) + "\n")
    return code


# --- Subcommands ------------------------------------------------------------------------------


def _claim(client: Client, options: argparse.Namespace) -> Any:
    return client.claim(
        options.story,
        options.todolist,
        agent_id=options.agent_id,
        fingerprint=options.fingerprint,
        ttl=options.ttl,
        wait=options.wait,
        lease_token=options.lease_token or os.environ.get(LEASE_TOKEN_ENV) or None,
    )


def _refresh(client: Client, options: argparse.Namespace) -> Any:
    return client.refresh(
        options.id, _lease_token(options), fencing_token=options.fencing_token, ttl=options.ttl
    )


def _release(client: Client, options: argparse.Namespace) -> Any:
    return client.release(options.id, _lease_token(options), fencing_token=options.fencing_token)


def _inspect(client: Client, options: argparse.Namespace) -> Any:
    if options.id is None and not (options.story and options.todolist):
        raise UsageError("give a claim ID, or --story and --todolist")
    return client.inspect(options.id, story=options.story, todolist=options.todolist)


def _check(client: Client, options: argparse.Namespace) -> Any:
    return client.check(options.story, options.todolist, options.fencing_token)


def _request(client: Client, options: argparse.Namespace) -> Any:
    try:
        payload = json.loads(options.payload) if options.payload else None
    except ValueError as error:
        raise UsageError(f"--payload is not JSON: {error}") from None
    return client.request_approval(
        options.kind, options.text, payload, agent_id=options.agent_id, claim=options.claim
    )


def _wait(client: Client, options: argparse.Namespace) -> Any:
    return client.await_approval(options.id, options.timeout)


def _job_submit(client: Client, options: argparse.Namespace) -> Any:
    try:
        text = sys.stdin.read() if options.file == "-" else Path(options.file).read_text()
        manifest = json.loads(text)
    except OSError as error:
        raise UsageError(f"cannot read {options.file}: {error.strerror}") from None
    except ValueError as error:
        raise UsageError(f"{options.file} is not JSON: {error}") from None
    return client.submit_job(
        manifest, live=options.live, agent_id=options.agent_id, callback_url=options.callback_url
    )


def _job_show(client: Client, options: argparse.Namespace) -> Any:
    return client.job(options.id)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="claimdesk",
        description=f"The Claimdesk API from a shell. Needs {URL_ENV} and {TOKEN_ENV}.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(
        name: str, run: Callable[..., Any], help: str, within: Any = commands
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = within.add_parser(name, help=help, description=help)
        sub.set_defaults(run=run)
        return sub

    def lease_proof(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("id", type=int, help="The claim's id.")
        sub.add_argument("--lease-token", help=f"Default: ${LEASE_TOKEN_ENV}.")
        sub.add_argument("--fencing-token", type=int, help="Exit 3 if the lease was lost since.")

    claim = command("claim", _claim, "Take the lease on a work item; prints its lease_token.")
    claim.add_argument("story")
    claim.add_argument("todolist")
    claim.add_argument("--agent-id", help=f"A label for your agent (default: ${AGENT_ID_ENV}).")
    claim.add_argument("--fingerprint", default="", help="A label: host or session.")
    claim.add_argument("--ttl", type=int, help="Lease length in seconds.")
    claim.add_argument("--wait", type=int, default=0, help="Queue up to this many seconds.")
    claim.add_argument("--lease-token", help="Refresh a lease you hold instead.")

    refresh = command("refresh", _refresh, "Extend your lease.")
    lease_proof(refresh)
    refresh.add_argument("--ttl", type=int, help="New lease length in seconds.")

    lease_proof(command("release", _release, "End your lease."))

    inspect = command("inspect", _inspect, "Show a claim without changing it.")
    inspect.add_argument("id", type=int, nargs="?")
    inspect.add_argument("--story", default="")
    inspect.add_argument("--todolist", default="")

    check = command("check", _check, "Exit 0 if the fencing token is the live lease's, else 3.")
    check.add_argument("story")
    check.add_argument("todolist")
    check.add_argument("--fencing-token", type=int, required=True)

    request = command("request", _request, "Ask for approval; prints the pending request.")
    request.add_argument("kind", choices=["claim", "command", "manifest"])
    request.add_argument("text")
    request.add_argument("--payload", help="A JSON object: the command, the manifest.")
    request.add_argument("--agent-id")
    request.add_argument("--claim", type=int, help="The claim the request is about.")

    wait = command(
        "wait",
        _wait,
        "Wait for a request's decision: exit 0 approved, 3 denied or expired, 6 still undecided.",
    )
    wait.add_argument("id", help="The request's id, or its first 6+ hex digits.")
    wait.add_argument("--timeout", type=float, default=600.0, help="Seconds (default 600).")

    job = commands.add_parser("job", help="Submit a manifest or show a job.")
    jobs = job.add_subparsers(required=True, metavar="ACTION")
    submit = command(
        "submit",
        _job_submit,
        "Submit a manifest; prints the job, its approval id and manifest_short.",
        jobs,
    )
    submit.add_argument("file", help="The manifest, a JSON file (- for stdin).")
    submit.add_argument("--live", action="store_true", help="Run for real once approved.")
    submit.add_argument("--agent-id")
    submit.add_argument("--callback-url", default="", help="Hears the decision and the end.")
    show = command("show", _job_show, "Show a job with its steps.", jobs)
    show.add_argument("id", help="The job's id, or its first 6+ hex digits.")
    return parser


if __name__ == "__main__":
    sys.exit(main())
