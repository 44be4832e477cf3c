"""Signing callbacks: HMAC-SHA256 over ``timestamp.body`` with the requesting token's secret.

The secret is derived from ``SECRET_KEY`` and the token's public prefix, so nothing secret is
stored and every token has its own; the token's holder reads it with that token
(``GET /api/v1/callbacks/secret/``). Rotating ``SECRET_KEY`` changes every secret.
"""

import hashlib
import hmac

from django.utils.crypto import salted_hmac

SIGNATURE_HEADER = "X-Claimdesk-Signature"
TIMESTAMP_HEADER = "X-Claimdesk-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def secret_for(signer: str) -> str:
    """The signing secret of the API token whose key prefix is ``signer``."""
    return salted_hmac("claimdesk.callbacks.secret", signer, algorithm="sha256").hexdigest()


def signature(secret: str, timestamp: int, body: str) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, "<timestamp>.<body>")."""
    message = f"{timestamp}.{body}".encode()
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def headers(signer: str, timestamp: int, body: str, idempotency_key: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: signature(secret_for(signer), timestamp, body),
        TIMESTAMP_HEADER: str(timestamp),
        IDEMPOTENCY_HEADER: idempotency_key,
    }
