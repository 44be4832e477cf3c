"""``Idempotency-Key`` on POST requests, with the semantics of payment APIs.

The first request with a key claims it (a row committed in its own transaction, guarded by a
unique constraint) and runs; its answer is stored in the same transaction as the work, so an
answer is stored exactly when the work was committed. A repeat with the same key and the same
request gets the stored answer with ``Idempotent-Replayed: true`` and does nothing again; with a
different request it gets 422; while the first is still running, 409. Server errors are not
stored: the work is rolled back and the key released, so the client may simply retry.
"""

import functools
import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import exceptions, status
from rest_framework.response import Response

from .models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Secrets an answer shows once (a lease token): never stored, so a replay answers them as null.
SHOWN_ONCE = ("lease_token",)


class KeyInUse(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "A request with this Idempotency-Key is still running; retry later."
    default_code = "idempotency_key_in_use"


class KeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used for a different request."
    default_code = "idempotency_key_reused"


def request_hash(request):
    """What makes two requests "the same": method, path and the body as canonical JSON."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.get_full_path()} {body}".encode()).hexdigest()


def _valid_key(key):
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise exceptions.ValidationError(
            {HEADER: [f"must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"]}
        )
    return key


def claim_key(user, key, digest):
    """Claim ``key`` for this request; returns ``(claimed_row, None)`` or ``(None, stored_row)``.

    Raises ``KeyReused`` for a different request under the same key and ``KeyInUse`` while the
    request that claimed it is still running.
    """
    now = timezone.now()
    IdempotencyKey.objects.filter(user=user, key=key, expires_at__lte=now).delete()
    try:
        row, created = IdempotencyKey.objects.get_or_create(
            user=user,
            key=key,
            defaults={
                "request_hash": digest,
                "expires_at": now + timedelta(seconds=settings.API_IDEMPOTENCY_TTL),
            },
        )
    except IntegrityError:
        # The request holding the key failed and released it between our insert and our look;
        # a retry runs.
        raise KeyInUse() from None
    if created:
        return row, None
    if row.request_hash != digest:
        raise KeyReused()
    if row.in_progress:
        raise KeyInUse()
    return None, row


def _storable_answer(data):
    if isinstance(data, dict) and any(data.get(name) for name in SHOWN_ONCE):
        return {**data, **{name: None for name in SHOWN_ONCE if name in data}}
    return data


def idempotent(action):
    """Make a POST view method honour ``Idempotency-Key``; without the header it runs as is."""

    @functools.wraps(action)
    def run_once(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return action(view, request, *args, **kwargs)
        claimed, stored = claim_key(request.user, _valid_key(key), request_hash(request))
        if stored is not None:
            return Response(
                stored.response_body,
                status=stored.response_status,
                headers={REPLAYED_HEADER: "true"},
            )
        try:
            with transaction.atomic():
                try:
                    response = action(view, request, *args, **kwargs)
                except Exception as exc:
                    # Domain errors are answers too, and are stored; the handler re-raises the rest.
                    response = view.handle_exception(exc)
                if response.status_code < status.HTTP_500_INTERNAL_SERVER_ERROR:
                    claimed.response_status = response.status_code
                    claimed.response_body = _storable_answer(response.data)
                    claimed.save(update_fields=["response_status", "response_body"])
                    return response
        except BaseException:
            claimed.delete()
            raise
        claimed.delete()
        return response

    return run_once


def purge_expired(now=None):
    """Delete keys past their time; returns how many went."""
    deleted, _ = IdempotencyKey.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
