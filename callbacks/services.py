"""Approval requests and jobs with a callback URL, and giving failed callbacks another round.

A callback URL is checked before the request is made (https, at most ``MAX_URL_LENGTH``
characters, no credentials, a host in ``CALLBACK_ALLOWED_HOSTS``; plain http only with
``DEBUG`` on), so no token holder can point the server at an address it was not told to reach.
"""

from functools import partial
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.http.request import validate_host
from django.utils import timezone

from audit.services import record
from automation import services as jobs
from automation.models import Job
from backoffice.actors import Actor
from backoffice.errors import InvalidInput, InvalidTransition, NotFound, NotPermitted
from claims import services as claims_services
from claims.models import ApprovalRequest
from telegram_bridge.outbox import queue_task

from .models import Callback, CallbackTarget

MAX_URL_LENGTH = 2000
REQUEUE_PERMISSION = "callbacks.requeue_callback"
DELIVER_TASK = "callbacks.tasks.deliver"
Status = Callback.Status


def url_problem(url: str) -> str:
    """What is wrong with ``url`` as a callback URL, or "" if nothing."""
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "is not a valid URL"
    schemes = {"https", "http"} if settings.DEBUG else {"https"}
    if parts.scheme not in schemes:
        return "must be an https URL" + (" (or http with DEBUG on)" if not settings.DEBUG else "")
    if parts.username is not None or parts.password is not None:
        return "must not carry credentials"
    if not host or not validate_host(host, settings.CALLBACK_ALLOWED_HOSTS):
        return "must be on a host in CALLBACK_ALLOWED_HOSTS"
    return ""


def _check(callback_url: str, signer: str) -> None:
    """Refuse a callback URL that may not be used, or one nobody could sign for."""
    if callback_url:
        problem = url_problem(callback_url)
        if not problem and not signer:
            problem = "needs an API token to sign the callback with"
        if problem:
            raise InvalidInput({"callback_url": problem})


@transaction.atomic
def request_approval(*, callback_url: str, signer: str, **request: Any) -> ApprovalRequest:
    """``claims.services.request_approval``, and once it is decided or expires, a signed POST of
    its new state to ``callback_url`` (if one is given), signed with the secret of the API token
    whose key prefix is ``signer``."""
    _check(callback_url, signer)
    approval = claims_services.request_approval(**request)
    if callback_url:
        CallbackTarget.objects.create(approval=approval, url=callback_url, signer=signer)
    return approval


def submit_job(*, callback_url: str, signer: str, **submit: Any) -> Job:
    """``automation.services.submit``, and a signed POST to ``callback_url`` (if one is given)
    once its approval request is decided and again when the job ends; the URL is checked as
    ``request_approval`` checks it, before anything is saved."""
    _check(callback_url, signer)

    def attach(job: Job) -> None:
        CallbackTarget.objects.create(
            approval=job.approval, job=job, url=callback_url, signer=signer
        )

    return jobs.submit(**submit, created=attach if callback_url else None)


def requeue(callback_id: object, *, actor: Actor) -> bool:
    """Give a failed or dead callback a fresh set of attempts; audited as ``callback.requeued``.

    Returns False when it is already queued. One being sent or already sent is refused.
    """
    if not actor.has_perm(REQUEUE_PERMISSION):
        raise NotPermitted(f"{actor.name} may not requeue callbacks.")
    with transaction.atomic():
        try:
            callback = Callback.objects.select_for_update().get(pk=int(str(callback_id)))
        except (Callback.DoesNotExist, ValueError):
            raise NotFound(f"No callback with id {callback_id}.") from None
        if callback.status == Status.QUEUED:
            return False
        if callback.status not in (Status.FAILED, Status.DEAD):
            raise InvalidTransition(
                f"Callback #{callback.pk} is {callback.status}; only failed or dead ones can be "
                "requeued.",
                status=callback.status,
            )
        previous = callback.status
        Callback.objects.filter(pk=callback.pk).update(
            status=Status.QUEUED,
            attempts=0,
            requeues=callback.requeues + 1,
            next_attempt_at=timezone.now(),
        )
        record(
            "callback.requeued",
            actor=actor,
            obj=callback,
            details={
                "url": callback.target.url,
                "idempotency_key": callback.idempotency_key,
                "previous_status": previous,
                "last_error": callback.last_error,
            },
        )
        transaction.on_commit(partial(queue_task, DELIVER_TASK, callback.pk))
    return True
