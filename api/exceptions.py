"""The one place where every failure becomes an HTTP answer.

Every error body has the same shape, ``{"error": code, "detail": message, "fields": {...}}``, with
the domain error's context (``holder``, ``expires_at``, ``status``) alongside when there is one.
Anything not handled here is a bug and stays a 500.
"""

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from backoffice.errors import Conflict, DomainError, InvalidInput, NotFound, NotPermitted

# An app's own errors subclass one of these and are answered with its status.
STATUS_BY_ERROR = {
    InvalidInput: status.HTTP_400_BAD_REQUEST,
    NotPermitted: status.HTTP_403_FORBIDDEN,
    NotFound: status.HTTP_404_NOT_FOUND,
    Conflict: status.HTTP_409_CONFLICT,
}


def error_body(code, detail, fields=None, **context):
    return {"error": code, "detail": str(detail), "fields": fields or {}, **context}


def _messages(value):
    """Field errors as lists of strings, however deep DRF or a service nested them."""
    if isinstance(value, dict):
        return {str(name): _messages(problem) for name, problem in value.items()}
    if isinstance(value, list | tuple):
        return [str(problem) for problem in value]
    return [str(value)]


def _summary(fields):
    return "; ".join(f"{name}: {' '.join(_flatten(problems))}" for name, problems in fields.items())


def _flatten(problems):
    if isinstance(problems, dict):
        return [text for nested in problems.values() for text in _flatten(nested)]
    return problems


def _domain_response(exc):
    code = next(
        (http for error, http in STATUS_BY_ERROR.items() if isinstance(exc, error)),
        status.HTTP_400_BAD_REQUEST,
    )
    context = dict(exc.context)
    fields = _messages(context.pop("fields", {}))
    return Response(error_body(exc.code, exc.message, fields, **context), status=code)


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return _domain_response(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        fields = _messages(detail)
        response.data = error_body("invalid", _summary(fields), fields)
    elif isinstance(exc, Http404):
        response.data = error_body("not_found", "Not found.")
    elif isinstance(exc, PermissionDenied):
        response.data = error_body("permission_denied", response.data["detail"])
    else:
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        response.data = error_body(code if isinstance(code, str) else "error", exc.detail)
    return response
