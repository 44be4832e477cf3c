"""Lease tokens: the one proof that a caller holds a lease.

A token is a random secret handed out once, in the answer that grants the lease; only its SHA-256
hash is stored (a 256-bit random value needs no salt or slow hash). The ``clt_`` prefix lets the
log redaction and secret scanners recognise one.
"""

import hashlib
import secrets

LEASE_TOKEN_PREFIX = "clt_"  # noqa: S105 - a prefix


def new_lease_token() -> tuple[str, str]:
    """A fresh token and the hash to store."""
    token = LEASE_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_lease_token(token)


def hash_lease_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
