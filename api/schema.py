"""OpenAPI description details that drf-spectacular cannot infer."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from .idempotency import HEADER
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
    str,
    OpenApiParameter.HEADER,
    description="Send the same key again to get the first answer back without a second effect "
    "(header Idempotent-Replayed: true). Kept per user for API_IDEMPOTENCY_TTL seconds.",
)

WHY = {
    400: "Invalid input: `fields` says what is wrong with each field.",
    401: "No valid token or session.",
    403: "Not permitted, or not the holder of the lease (`not_holder`).",
    404: "No such object.",
    409: "The object is in a state that does not allow this, or the Idempotency-Key is in use.",
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
