"""The webhook Telegram posts updates to.

It checks the secret Telegram echoes in ``X-Telegram-Bot-Api-Secret-Token``, stores the raw update
and answers at once; a worker processes it (``telegram_bridge.inbound``). Telegram retries any
non-2xx answer, so only requests that can never succeed (wrong secret, not an update) get one.
"""

import hmac
import json

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from backoffice.errors import InvalidInput

from . import inbound


def _error(status, detail):
    return JsonResponse({"ok": False, "detail": detail}, status=status)


@csrf_exempt
@require_POST
def webhook(request):
    secret = settings.TELEGRAM_WEBHOOK_SECRET
    if not secret:
        return _error(404, "The webhook is disabled.")
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        return _error(403, "Wrong or missing secret token.")
    limit = settings.TELEGRAM_WEBHOOK_MAX_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _error(400, "Content-Length is not a number.")
    if declared > limit:
        return _error(413, f"An update may be at most {limit} bytes.")
    body = request.read(limit + 1)
    if len(body) > limit:
        return _error(413, f"An update may be at most {limit} bytes.")
    try:
        update = json.loads(body)
    except (ValueError, RecursionError):
        return _error(400, "The body is not valid JSON.")
    try:
        stored = inbound.store(update)
    except InvalidInput as error:
        return _error(400, error.message)
    return JsonResponse({"ok": True, "duplicate": not stored.created})
