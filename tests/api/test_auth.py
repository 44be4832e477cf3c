import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from knox.models import AuthToken
from model_bakery import baker

from audit.models import AuditEvent
from backoffice.errors import InvalidInput

from .conftest import client_with_token, token_for

URL = "/api/v1/claims/"


@pytest.mark.django_db
class TestTokens:
    def test_no_credentials_is_a_401_asking_for_a_token(self, anonymous_client):
        response = anonymous_client.get(URL)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == "Token"
        assert response.json() == {
            "error": "not_authenticated",
            "detail": "Authentication credentials were not provided.",
            "fields": {},
        }

    @pytest.mark.parametrize(
        "header",
        ["Token nonsense", "Token", "Token a b", "Token " + "0" * 64, "Token \u00e9t\u00e9"],
    )
    def test_a_wrong_token_is_a_401(self, agent_user, header):
        client = client_with_token("x")
        client.credentials(HTTP_AUTHORIZATION=header)
        response = client.get(URL)
        assert response.status_code == 401
        assert response.json()["error"] == "authentication_failed"

    def test_an_expired_token_is_a_401(self, agent_user):
        key = token_for(agent_user)
        AuthToken.objects.update(expiry=timezone.now() - timedelta(seconds=1))
        assert client_with_token(key).get(URL).status_code == 401

    def test_an_inactive_users_token_is_a_401(self, agent_user):
        key = token_for(agent_user)
        agent_user.is_active = False
        agent_user.save()
        assert client_with_token(key).get(URL).status_code == 401

    def test_only_a_hash_of_the_key_is_stored(self, agent_user):
        key = token_for(agent_user)
        token = AuthToken.objects.get(user=agent_user)
        assert key not in (token.digest, token.token_key)
        assert key.startswith(token.token_key)

    def test_a_session_works_for_the_browsable_api(self, client, approver):
        client.force_login(approver)
        response = client.get(URL, HTTP_ACCEPT="text/html")
        assert response.status_code == 200
        assert b"Claim" in response.content


@pytest.mark.django_db
class TestCreateApiTokenCommand:
    def test_prints_only_the_key_which_then_authenticates(self, agent_user):
        out = io.StringIO()
        call_command("create_api_token", "agent-bot", "--expiry-hours", "2", stdout=out)
        key = out.getvalue().strip()
        assert len(key) == 64 and "\n" not in key
        assert client_with_token(key).get(URL).status_code == 200
        token = AuthToken.objects.get(user=agent_user)
        assert timedelta(minutes=119) < token.expiry - timezone.now() <= timedelta(hours=2)
        event = AuditEvent.objects.get(action="api_token.created")
        assert event.source == "cli"
        assert key not in str(event.details)

    def test_uses_the_configured_expiry_by_default(self, agent_user, settings):
        settings.API_TOKEN_EXPIRY_HOURS = 5
        call_command("create_api_token", "agent-bot", stdout=io.StringIO())
        expiry = AuthToken.objects.get(user=agent_user).expiry - timezone.now()
        assert timedelta(hours=4) < expiry <= timedelta(hours=5)

    def test_an_unknown_user_is_an_error(self, db):
        with pytest.raises(InvalidInput):
            call_command("create_api_token", "nobody", stdout=io.StringIO())

    def test_a_nonsense_expiry_is_an_error(self, agent_user):
        with pytest.raises(InvalidInput):
            call_command("create_api_token", "agent-bot", "--expiry-hours", "0")
        assert not AuthToken.objects.exists()


@pytest.mark.django_db
class TestAdminTokenPage:
    @pytest.fixture
    def superuser_client(self, client):
        client.force_login(baker.make("auth.User", is_staff=True, is_superuser=True))
        return client

    def test_creating_a_token_shows_its_key_once_and_never_again(
        self, superuser_client, agent_user
    ):
        response = superuser_client.post(
            "/admin/api/apitoken/add/", {"user": agent_user.pk, "expiry_hours": 3}
        )
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"]
        key = response.context["key"]
        assert key.encode() in response.content
        assert client_with_token(key).get(URL).status_code == 200
        listing = superuser_client.get("/admin/api/apitoken/")
        token = AuthToken.objects.get(user=agent_user)
        detail = superuser_client.get(f"/admin/api/apitoken/{token.pk}/change/")
        for page in (listing, detail):
            assert page.status_code == 200
            assert key.encode() not in page.content
        assert AuditEvent.objects.get(action="api_token.created").source == "admin"

    def test_the_form_rejects_a_missing_user(self, superuser_client):
        response = superuser_client.post("/admin/api/apitoken/add/", {"expiry_hours": 3})
        assert response.status_code == 200
        assert response.context["form"].errors["user"]
        assert not AuthToken.objects.exists()

    def test_staff_without_permission_cannot_create_tokens(self, client, agent_user):
        client.force_login(baker.make("auth.User", is_staff=True))
        response = client.post(
            "/admin/api/apitoken/add/", {"user": agent_user.pk, "expiry_hours": 3}
        )
        assert response.status_code == 403
        assert not AuthToken.objects.exists()
