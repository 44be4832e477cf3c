"""/metrics for Prometheus, /healthz and /readyz for load balancers and orchestrators.

Thin views: the metrics come from ``metrics``, the checks from ``health``. /metrics is open to
staff signed in to the admin and to the bearer token ``METRICS_BEARER_TOKEN`` (compared in
constant time); the health probes are open to all and show no data, only what is up.
"""

import hmac

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from backoffice.timestamps import iso_utc

from . import health, metrics

BEARER = "Bearer "


def _token_given(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[len(BEARER) :].strip() if header.startswith(BEARER) else None


def _refusal(request: HttpRequest) -> HttpResponse | None:
    """401 without credentials or with a wrong token, 403 for a signed-in user not staff."""
    token = _token_given(request)
    expected = settings.METRICS_BEARER_TOKEN
    if token is not None:
        if expected and hmac.compare_digest(token.encode(), expected.encode()):
            return None
    elif request.user.is_authenticated:
        if request.user.is_active and request.user.is_staff:
            return None
        return HttpResponse("Staff only.\n", status=403, content_type="text/plain")
    refused = HttpResponse("Sign in as staff or send the metrics bearer token.\n", status=401)
    refused["Content-Type"] = "text/plain"
    refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return refused


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    refused = _refusal(request)
    if refused is not None:
        return refused
    try:
        body = generate_latest(metrics.registry())
    except DatabaseError:
        return HttpResponse("The database did not answer.\n", status=503, content_type="text/plain")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


def _report(checks: dict[str, health.Check]) -> JsonResponse:
    result = health.run(checks)
    return JsonResponse(
        {
            "status": "ok" if result.healthy else "fail",
            "checked_at": iso_utc(timezone.now()),
            "checks": result.checks,
        },
        status=200 if result.healthy else 503,
    )


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and answers; touches nothing else."""
    return _report({"process": lambda: None})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Database, broker, a recent worker heartbeat, every migration applied."""
    return _report(health.READINESS)
