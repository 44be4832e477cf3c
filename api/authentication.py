"""Who is calling: agents send ``Authorization: Token <key>``; people use their admin session.

Tokens are django-rest-knox tokens, stored hashed and shown once when they are created (see
``api.tokens``).
"""

from django.utils.translation import gettext_lazy as _
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework import exceptions


class TokenAuthentication(KnoxTokenAuthentication):
    """Knox's token check, answering 401 (not 500) to a key that is not even valid UTF-8."""

    def authenticate_credentials(self, token):
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        return super().authenticate_credentials(token)
