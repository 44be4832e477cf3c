"""Who is calling: agents send ``Authorization: Token <key>``; people use their admin session.

Tokens are django-rest-knox tokens, stored hashed and shown once when they are created (see
``api.tokens``).
"""

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework import exceptions


class TokenAuthentication(KnoxTokenAuthentication):
    """Knox's token check, with two changes.

    A key that is not even valid UTF-8 is a 401, not a 500. And only the presented token is
    checked for expiry (an expired one is deleted): knox would also load every other token of the
    user on every request, one query per request for housekeeping that does not need to be
    done in the request path.
    """

    def authenticate_credentials(self, token):
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        return super().authenticate_credentials(token)

    def _cleanup_token(self, auth_token):
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False
