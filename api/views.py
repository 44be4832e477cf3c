"""The REST endpoints: parse, call a service or selector, answer.

Every write builds its ``Actor`` at this edge and calls the same ``claims.services`` function
the admin calls, so the audit trail is the same whichever channel made a change. Errors are
turned into answers in ``api.exceptions``, never here.
"""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from audit.models import AuditEvent
from automation import selectors as job_selectors
from automation import services as jobs
from backoffice.actors import Actor
from callbacks import services as callback_services
from callbacks import signing
from claims import services, waiting
from claims.models import ApprovalRequest, Claim, Decision
from claims.selectors import approval_id_for, get_claim, resolve_approval
from telegram_bridge import dead_letters, outbox

from .actors import api_actor
from .exceptions import error_body
from .filters import (
    ApprovalFilter,
    AuditEventFilter,
    ClaimFilter,
    JobFilter,
    OutboundMessageFilter,
)
from .idempotency import idempotent
from .pagination import AuditCursorPagination
from .permissions import StaffCanView
from .schema import DETAIL, IDEMPOTENCY_KEY, LIST, WRITE, errors
from .serializers import (
    ApprovalRequestSerializer,
    ApprovalSerializer,
    AuditEventSerializer,
    CallbackSecretSerializer,
    ClaimRequestSerializer,
    ClaimSerializer,
    DecisionResultSerializer,
    DecisionSerializer,
    FenceCheckSerializer,
    GrantSerializer,
    JobResultSerializer,
    JobSerializer,
    JobSubmitSerializer,
    LeaseProofSerializer,
    OutboundMessageSerializer,
    RefreshSerializer,
    RequeueResultSerializer,
)


def no_such_endpoint(request: HttpRequest, path: str = "") -> JsonResponse:
    """Unknown paths under /api/ answer with the API's error body, not Django's HTML page."""
    return JsonResponse(error_body("not_found", "No API endpoint at this path."), status=404)


def validated(serializer_class: type[Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


LEASE_TOKEN_HEADER = "Lease-Token"  # noqa: S105 - a header name

LEASE_TOKEN = OpenApiParameter(
    LEASE_TOKEN_HEADER,
    str,
    OpenApiParameter.HEADER,
    description="The lease token from the grant answer, instead of the lease_token field.",
)


WAIT_TIMEOUT = OpenApiParameter(
    "timeout",
    float,
    description=f"Seconds to wait at most, 0 to {waiting.MAX_WAIT_SECONDS:g}.",
)


def lease_token_from(request: Request, data: dict[str, Any]) -> str:
    """The caller's lease token: the body's field, else the Lease-Token header."""
    return data.get("lease_token") or request.headers.get(LEASE_TOKEN_HEADER, "").strip()


def signer_of(request: Request) -> str:
    """The key prefix of the API token behind ``request``, which signs its callbacks; "" for a
    session."""
    return getattr(request.auth, "token_key", "") or ""


def claim_actor(request: Request, data: dict[str, Any]) -> Actor:
    return api_actor(request, label=data.get("agent_id", ""))


@extend_schema_view(
    list=extend_schema(summary="List claims", responses={200: ClaimSerializer, **LIST}),
    retrieve=extend_schema(summary="One claim", responses={200: ClaimSerializer, **DETAIL}),
)
class ClaimViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Leases on work items: claim, refresh, release, check a fencing token."""

    lookup_value_regex = "[^/]+"

    queryset = Claim.objects.order_by("id")
    serializer_class = ClaimSerializer
    filterset_class = ClaimFilter

    def retrieve(self, request: Request, pk: str = "") -> Response:
        return Response(ClaimSerializer.represent(get_claim(pk)))

    @extend_schema(
        summary="Claim a work item",
        description="With `wait`, a busy work item is waited for in line (first come, first "
        "served) for up to that many seconds; the call holds its web worker meanwhile.",
        request=ClaimRequestSerializer,
        parameters=[IDEMPOTENCY_KEY, LEASE_TOKEN],
        responses={201: GrantSerializer, 200: GrantSerializer, **WRITE},
    )
    @idempotent
    def create(self, request: Request) -> Response:
        data = validated(ClaimRequestSerializer, request)
        granted = services.claim(
            story=data["story"],
            todolist=data["todolist"],
            agent_id=data["agent_id"],
            fingerprint=data.get("fingerprint", ""),
            ttl_seconds=data.get("ttl_seconds"),
            lease_token=lease_token_from(request, data),
            wait=data["wait"],
            actor=claim_actor(request, data),
        )
        code = status.HTTP_200_OK if granted.outcome == "refreshed" else status.HTTP_201_CREATED
        body = {
            **ClaimSerializer.represent(granted.claim),
            "outcome": granted.outcome,
            "lease_token": granted.lease_token or None,
        }
        return Response(body, code)

    @extend_schema(
        summary="Extend your lease",
        request=RefreshSerializer,
        parameters=[IDEMPOTENCY_KEY, LEASE_TOKEN],
        responses={200: ClaimSerializer, **WRITE},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def refresh(self, request: Request, pk: str = "") -> Response:
        data = validated(RefreshSerializer, request)
        claim = services.refresh(
            pk,
            lease_token=lease_token_from(request, data),
            fencing_token=data.get("fencing_token"),
            ttl_seconds=data.get("ttl_seconds"),
            actor=api_actor(request),
        )
        return Response(ClaimSerializer.represent(claim))

    @extend_schema(
        summary="Release your lease",
        request=LeaseProofSerializer,
        parameters=[IDEMPOTENCY_KEY, LEASE_TOKEN],
        responses={200: ClaimSerializer, **WRITE},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def release(self, request: Request, pk: str = "") -> Response:
        data = validated(LeaseProofSerializer, request)
        claim = services.release(
            pk,
            lease_token=lease_token_from(request, data),
            fencing_token=data.get("fencing_token"),
            actor=api_actor(request),
        )
        return Response(ClaimSerializer.represent(claim))

    @extend_schema(
        summary="Check a fencing token",
        description="200 if the fencing token is the live lease's on the work item; 409 "
        "`stale_fence` with the current one if the lease was lost.",
        request=FenceCheckSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: ClaimSerializer, **WRITE},
    )
    @action(detail=False, methods=["post"])
    @idempotent
    def check(self, request: Request) -> Response:
        data = validated(FenceCheckSerializer, request)
        claim = services.check_fence(
            story=data["story"],
            todolist=data["todolist"],
            fencing_token=data["fencing_token"],
            actor=api_actor(request),
        )
        return Response(ClaimSerializer.represent(claim))


def _decision_schema(summary: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return extend_schema(
        summary=summary,
        request=DecisionSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: DecisionResultSerializer, **WRITE},
    )


@extend_schema_view(
    list=extend_schema(
        summary="List approval requests", responses={200: ApprovalSerializer, **LIST}
    ),
    retrieve=extend_schema(
        summary="One approval request", responses={200: ApprovalSerializer, **DETAIL}
    ),
)
class ApprovalViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Questions to the approvers, and their decisions.

    ``approve`` and ``deny`` are your vote under the request's policy: the answer shows the
    request with its ``votes`` and ``tally``; it stays pending until the quorum is met (or a veto
    denies it). Voting the way you already voted, or the way the request is already decided,
    answers 200 with ``changed: false``; a different vote on a decided request answers 409 with
    its current ``status``.
    """

    lookup_value_regex = "[^/]+"

    queryset = ApprovalRequest.objects.select_related(
        "requested_by_user", "decided_by"
    ).prefetch_related("votes__voter")
    serializer_class = ApprovalSerializer
    filterset_class = ApprovalFilter

    def retrieve(self, request: Request, pk: str = "") -> Response:
        return Response(ApprovalSerializer.represent(resolve_approval(pk)))

    @extend_schema(
        summary="Wait for the decision",
        description="Answers as soon as the request is no longer pending or postponed, or after "
        f"`timeout` seconds (0 to {waiting.MAX_WAIT_SECONDS:g}, default the most) with the "
        "request as it is: call again to wait longer. The call holds a server thread, not a "
        "database connection.",
        parameters=[WAIT_TIMEOUT],
        responses={200: ApprovalSerializer, **errors(400, 401, 404, 429)},
    )
    @action(detail=True, methods=["get"])
    def wait(self, request: Request, pk: str = "") -> Response:
        timeout = waiting.checked_timeout(
            request.query_params.get("timeout", waiting.MAX_WAIT_SECONDS)
        )
        body = ApprovalSerializer.represent(waiting.wait_for_decision(pk, timeout))
        waiting.let_go_of_the_database()
        return Response(body)

    @extend_schema(
        summary="Ask for approval",
        request=ApprovalRequestSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: ApprovalSerializer, **WRITE},
    )
    @idempotent
    def create(self, request: Request) -> Response:
        data = validated(ApprovalRequestSerializer, request)
        approval = callback_services.request_approval(
            kind=data["kind"],
            text=data["text"],
            agent_id=data.get("agent_id", ""),
            claim_id=data.get("claim"),
            payload=data.get("payload"),
            actor=api_actor(request, label=data.get("agent_id", "")),
            callback_url=data.get("callback_url", ""),
            signer=signer_of(request),
        )
        return Response(ApprovalSerializer.represent(approval), status.HTTP_201_CREATED)

    def _decide(self, request: Request, pk: str, decision: Decision) -> Response:
        note = validated(DecisionSerializer, request)["note"]
        decided = services.decide(
            approval_id_for(pk), decision, actor=api_actor(request), note=note
        )
        return Response(
            {**ApprovalSerializer.represent(decided.approval), "changed": decided.changed}
        )

    @_decision_schema("Vote to approve")
    @action(detail=True, methods=["post"])
    @idempotent
    def approve(self, request: Request, pk: str = "") -> Response:
        return self._decide(request, pk, Decision.APPROVE)

    @_decision_schema("Vote to deny")
    @action(detail=True, methods=["post"])
    @idempotent
    def deny(self, request: Request, pk: str = "") -> Response:
        return self._decide(request, pk, Decision.DENY)

    @_decision_schema("Postpone")
    @action(detail=True, methods=["post"])
    @idempotent
    def postpone(self, request: Request, pk: str = "") -> Response:
        return self._decide(request, pk, Decision.POSTPONE)

    @_decision_schema("Reopen a postponed request")
    @action(detail=True, methods=["post"])
    @idempotent
    def reopen(self, request: Request, pk: str = "") -> Response:
        return self._decide(request, pk, Decision.REOPEN)

    @extend_schema(
        summary="Archive a finished request",
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: DecisionResultSerializer, **WRITE},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def archive(self, request: Request, pk: str = "") -> Response:
        decided = services.archive(approval_id_for(pk), actor=api_actor(request))
        return Response(
            {**ApprovalSerializer.represent(decided.approval), "changed": decided.changed}
        )


@extend_schema_view(
    list=extend_schema(summary="List jobs, newest first", responses={200: JobSerializer, **LIST}),
    retrieve=extend_schema(
        summary="One job with its steps", responses={200: JobSerializer, **DETAIL}
    ),
)
class JobViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Manifests run by the automation runner once approved (docs/automation.md).

    Submitting creates the job and its approval request, which binds the manifest's SHA-256;
    nothing runs before approval, and a job runs dry unless submitted ``live`` where
    ``AUTOMATION_ALLOW_EXECUTION`` is on. Ids may be shortened to six or more hex digits.
    """

    lookup_value_regex = "[^/]+"

    queryset = job_selectors.jobs()
    serializer_class = JobSerializer
    filterset_class = JobFilter

    def retrieve(self, request: Request, pk: str = "") -> Response:
        return Response(JobSerializer.represent(job_selectors.get_job(pk)))

    @extend_schema(
        summary="Submit a manifest",
        request=JobSubmitSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: JobSerializer, **WRITE},
    )
    @idempotent
    def create(self, request: Request) -> Response:
        data = validated(JobSubmitSerializer, request)
        job = callback_services.submit_job(
            manifest_data=data["manifest"],
            live=data["live"],
            agent_id=data["agent_id"],
            actor=api_actor(request, label=data["agent_id"]),
            callback_url=data["callback_url"],
            signer=signer_of(request),
        )
        return Response(JobSerializer.represent(job), status.HTTP_201_CREATED)

    @extend_schema(
        summary="Cancel a job that has not ended",
        description="A waiting job ends at once; a running one when its worker has killed the "
        "step's process group. Its submitter, or staff with the cancel permission.",
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: JobResultSerializer, **WRITE},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def cancel(self, request: Request, pk: str = "") -> Response:
        job, changed = jobs.cancel(job_selectors.get_job(pk).pk, actor=api_actor(request))
        return Response({**JobSerializer.represent(job), "changed": changed})

    @extend_schema(
        summary="Re-run a failed or cancelled job from its failed step",
        description="No new approval while the manifest's hash is the approved one and the "
        "request is not archived (409 otherwise). Needs the re-run permission.",
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: JobSerializer, **WRITE},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def rerun(self, request: Request, pk: str = "") -> Response:
        job = jobs.rerun(job_selectors.get_job(pk).pk, actor=api_actor(request))
        return Response(JobSerializer.represent(job))


@extend_schema_view(
    list=extend_schema(
        summary="Read the audit trail, oldest first",
        responses={200: AuditEventSerializer, **errors(400, 401, 403, 404, 429)},
    ),
    retrieve=extend_schema(
        summary="One audit event",
        responses={200: AuditEventSerializer, **errors(401, 403, 404, 429)},
    ),
)
class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    """The append-only audit trail; staff with the audit view permission only."""

    lookup_value_regex = "[^/]+"

    queryset = AuditEvent.objects.select_related("actor")
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilter
    pagination_class = AuditCursorPagination
    permission_classes = [StaffCanView]


@extend_schema_view(
    list=extend_schema(
        summary="List outbound Telegram messages",
        responses={200: OutboundMessageSerializer, **errors(400, 401, 403, 429)},
    ),
    retrieve=extend_schema(
        summary="One outbound message",
        responses={200: OutboundMessageSerializer, **errors(401, 403, 404, 429)},
    ),
)
class OutboundMessageViewSet(viewsets.ReadOnlyModelViewSet):
    """The Telegram outbox, for staff: see what failed and send it again."""

    lookup_value_regex = "[^/]+"

    queryset = outbox.messages().order_by("id")
    serializer_class = OutboundMessageSerializer
    filterset_class = OutboundMessageFilter
    permission_classes = [StaffCanView]

    @extend_schema(
        summary="Requeue a failed or dead message",
        request=None,
        parameters=[IDEMPOTENCY_KEY],
        responses={200: RequeueResultSerializer, **WRITE},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def requeue(self, request: Request, pk: str = "") -> Response:
        requeued = dead_letters.requeue(pk, actor=api_actor(request))
        message = outbox.get(pk)
        return Response({**OutboundMessageSerializer.represent(message), "requeued": requeued})


class CallbackSecretView(APIView):
    """The secret that signs the callbacks of requests made with this API token."""

    @extend_schema(
        summary="Your callback signing secret",
        description="Derived from the token that calls: each token has its own. A session has "
        "none (403). See docs/callbacks.md.",
        responses={200: CallbackSecretSerializer, **errors(401, 403, 429)},
    )
    def get(self, request: Request) -> Response:
        signer = signer_of(request)
        if not signer:
            return Response(
                error_body("forbidden", "Only an API token has a callback secret."),
                status.HTTP_403_FORBIDDEN,
            )
        body = {
            "secret": signing.secret_for(signer),
            "signature_header": signing.SIGNATURE_HEADER,
            "timestamp_header": signing.TIMESTAMP_HEADER,
            "idempotency_header": signing.IDEMPOTENCY_HEADER,
        }
        return Response(body, headers={"Cache-Control": "no-store"})
