"""OpenAPI description details that drf-spectacular cannot infer."""

import copy

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from .idempotency import HEADER, MAX_KEY_LENGTH
from .serializers import ConflictSerializer, ErrorSerializer


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=self.target.authenticate_header(None)
        )


IDEMPOTENCY_KEY = OpenApiParameter(
    HEADER,
    # Printable ASCII, as api.idempotency checks; no outer spaces, which HTTP would strip anyway.
    {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_KEY_LENGTH,
        "pattern": "^[!-~]([ -~]*[!-~])?$",
    },
    OpenApiParameter.HEADER,
    description="Send the same key again to get the first answer back without a second effect "
    "(header Idempotent-Replayed: true). Kept per user for API_IDEMPOTENCY_TTL seconds.",
)

WHY = {
    400: "Invalid input: `fields` says what is wrong with each field.",
    401: "No valid token or session.",
    403: "Not permitted, or no proof of holding the lease (`not_holder`: no or a wrong lease "
    "token).",
    404: "No such object.",
    409: "The object is in a state that does not allow this (`conflict`, `frozen`, "
    "`stale_fence`, `invalid_transition`), or the Idempotency-Key is in use.",
    415: "The body is not JSON.",
    422: "The Idempotency-Key was used for a different request.",
    429: "Too many requests; see Retry-After.",
}


def errors(*codes):
    """The documented error answers of an operation, all with the one error body."""
    return {
        code: OpenApiResponse(ConflictSerializer if code == 409 else ErrorSerializer, WHY[code])
        for code in codes
    }


READ = errors(401, 429)
DETAIL = errors(401, 404, 429)
LIST = errors(400, 401, 429)
WRITE = errors(400, 401, 403, 404, 409, 415, 422, 429)


def _link(target, *, body=None):
    """A link to ``target`` for the object in the answer; ``body``: what to send, if anything."""
    link = {"operationId": target, "parameters": {"id": "$response.body#/id"}}
    if body is not None:
        link["requestBody"] = body
    return link


# OpenAPI links: which calls can follow an answer, with the id it answered. Clients and
# stateful test tools follow them. Refresh and release send the body the lease was claimed (or
# last refreshed) with; its lease_token (from the grant answer) proves holdership.
LEASE_PROOF = {"lease_token": "$response.body#/lease_token"}
CLAIM_FOLLOW_UPS = {
    "GetClaim": _link("claims_retrieve"),
    "RefreshClaim": _link("claims_refresh_create", body=LEASE_PROOF),
    "ReleaseClaim": _link("claims_release_create", body=LEASE_PROOF),
}
DECIDED_FOLLOW_UPS = {
    "GetApproval": _link("approvals_retrieve"),
    "Archive": _link("approvals_archive_create"),
}
PENDING_FOLLOW_UPS = {
    "Approve": _link("approvals_approve_create"),
    "Deny": _link("approvals_deny_create"),
    "Postpone": _link("approvals_postpone_create"),
    **DECIDED_FOLLOW_UPS,
}
LINKS = {
    "claims_create": {"200": CLAIM_FOLLOW_UPS, "201": CLAIM_FOLLOW_UPS},
    "claims_refresh_create": {"200": {"GetClaim": _link("claims_retrieve")}},
    "approvals_create": {"201": PENDING_FOLLOW_UPS},
    "approvals_approve_create": {"200": DECIDED_FOLLOW_UPS},
    "approvals_deny_create": {"200": DECIDED_FOLLOW_UPS},
    "approvals_postpone_create": {"200": PENDING_FOLLOW_UPS},
}


# The web server (gunicorn) refuses a request line longer than it accepts before Django sees it,
# so this answer has no JSON body; every operation may get it.
URI_TOO_LONG = {"description": "The URI is too long; answered by the web server, without a body."}


def add_links(result, generator, request, public):
    """drf-spectacular post-processing hook: add ``LINKS`` to the answers they follow, and the
    414 every operation may get."""
    operations = {
        operation["operationId"]: operation
        for methods in result["paths"].values()
        for operation in methods.values()
    }
    for operation in operations.values():
        operation["responses"].setdefault("414", copy.deepcopy(URI_TOO_LONG))
    for source, by_status in LINKS.items():
        responses = operations[source]["responses"]
        for status_code, links in by_status.items():
            responses[status_code]["links"] = copy.deepcopy(links)
    return result
