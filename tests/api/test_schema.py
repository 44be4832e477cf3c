"""The published OpenAPI schema: valid, complete, and true of the running API."""

import re

import pytest
import requests
import schemathesis
from django.core.management import call_command
from hypothesis import HealthCheck, settings
from model_bakery import baker
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.models import IdempotencyKey
from api.schema import LINKS
from backoffice.actors import Actor, Source
from claims import services
from claims.models import ApprovalRequest, Claim
from telegram_bridge.models import OutboundMessage

from .conftest import token_for

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


def test_the_schema_validates_without_warnings(tmp_path):
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


@pytest.mark.django_db
def test_every_operation_documents_every_error_status(client):
    schema = client.get("/api/schema/?format=json").json()
    assert "tokenAuth" in schema["components"]["securitySchemes"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert {"401", "429"} <= documented, (method, path)
            if "{id}" in path:
                assert "404" in documented, (method, path)
            if method == "post":
                assert {"400", "403", "409", "422"} <= documented, (method, path)
                names = {parameter["name"] for parameter in operation["parameters"]}
                assert "Idempotency-Key" in names, (method, path)


@pytest.mark.django_db
def test_swagger_ui_is_served_with_local_assets_only(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert not re.search(r"(src|href)=\"https?://", page)


@pytest.fixture
def superuser(transactional_db):
    return baker.make("auth.User", username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def live_schema(live_server, superuser):
    """The schema as the running server publishes it, with some data to find."""
    actor = Actor(source=Source.SYSTEM, user=superuser, label="fixture")
    granted = services.claim(story="S-1", todolist="t", agent_id="a", fingerprint="f", actor=actor)
    services.request_approval(
        kind="command", text="go?", agent_id="a", claim_id=granted.claim.pk, actor=actor
    )
    baker.make(
        OutboundMessage,
        status="dead",
        chat_id=1,
        payload={},
        next_attempt_at=granted.claim.acquired_at,
    )
    return schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")


schema = schemathesis.pytest.from_fixture("live_schema")


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_schema_says(case, superuser):
    response = case.call(headers={"Authorization": f"Token {token_for(superuser)}"}, timeout=30)
    case.validate_response(response, checks=CHECKS)


def test_the_schema_links_each_new_object_to_what_can_follow(live_schema):
    links = live_schema.raw_schema["paths"]["/api/v1/claims/"]["post"]["responses"]["201"]["links"]
    assert links["ReleaseClaim"] == {
        "operationId": "claims_release_create",
        "parameters": {"id": "$response.body#/id"},
        "requestBody": {"lease_token": "$response.body#/lease_token"},
    }


# The writes the published links lead to, each on an object named in an earlier answer.
LINKED_WRITES = {
    "claims_refresh_create",
    "claims_release_create",
    "approvals_approve_create",
    "approvals_deny_create",
    "approvals_postpone_create",
    "approvals_archive_create",
}


def test_calls_following_the_schema_links_answer_as_the_schema_says(live_schema, superuser):
    """Claims are refreshed and released, requests decided and archived, through the links."""
    headers = {"Authorization": f"Token {token_for(superuser)}"}
    linked_writes = []
    # Only the published links, and only valid input: invalid input is the stateless test's
    # business, and a rejected body (the API refuses NUL characters outright) would end a chain
    # before it reaches a linked write.
    live_schema.config.phases.stateful.inference.algorithms = []
    live_schema.config.generation.update(modes=[GenerationMode.POSITIVE], allow_x00=False)

    class Workflow(live_schema.as_state_machine()):
        def setup(self):
            # Every scenario starts from the same data, so the same calls get the same answers:
            # Hypothesis picks each next call from the answers so far, and refuses to go on when
            # a choice it made before turns out differently (FlakyStrategyDefinition).
            for model in (ApprovalRequest, Claim, IdempotencyKey):
                model.objects.all().delete()
            self.linked_ids = set()

        def get_call_kwargs(self, case):
            return {"headers": headers, "timeout": 30}

        def after_call(self, response, case):
            super().after_call(response, case)
            operation = case.operation.definition.raw["operationId"]
            if operation in LINKED_WRITES and case.path_parameters["id"] in self.linked_ids:
                linked_writes.append((operation, response.status_code))
            if str(response.status_code) in LINKS.get(operation, {}):
                self.linked_ids.add(response.json()["id"])

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS)

    Workflow.run(settings=settings(Workflow.TestCase.settings, max_examples=20, derandomize=True))
    # Only a followed link makes such a write succeed: a generated id names no request and a
    # generated body proves no holdership of a claim.
    assert any(status == 200 for _, status in linked_writes), linked_writes


class SchemaClient:
    """A client that knows nothing of the API but what its published schema says."""

    def __init__(self, base_url, key):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {key}"
        schema = self.session.get(f"{base_url}/api/schema/", params={"format": "json"}).json()
        self.operations = {
            operation["operationId"]: (method.upper(), path)
            for path, methods in schema["paths"].items()
            for method, operation in methods.items()
        }

    def call(self, operation_id, body=None, **path_params):
        method, template = self.operations[operation_id]
        path = template.format(**path_params)
        response = self.session.request(method, f"{self.base_url}{path}", json=body, timeout=30)
        assert response.status_code < 300, (operation_id, response.status_code, response.text)
        return response.json()


@pytest.mark.django_db(transaction=True)
def test_a_client_built_from_the_schema_alone_claims_asks_approves_and_archives(live_server):
    agent = baker.make("auth.User", username="agent", is_active=True)
    boss = baker.make("auth.User", username="boss", is_staff=True, is_superuser=True)
    as_agent = SchemaClient(live_server.url, token_for(agent))
    as_boss = SchemaClient(live_server.url, token_for(boss))

    claim = as_agent.call(
        "claims_create",
        {"story": "S-9", "todolist": "ops", "agent_id": "bot-1", "fingerprint": "fp"},
    )
    asked = as_agent.call(
        "approvals_create", {"kind": "claim", "text": "Take S-9?", "claim": claim["id"]}
    )
    approved = as_boss.call("approvals_approve_create", {"note": "ok"}, id=asked["id"])
    archived = as_boss.call("approvals_archive_create", id=asked["id"])
    seen = as_agent.call("approvals_retrieve", id=asked["id"])

    assert claim["outcome"] == "acquired"
    assert (approved["status"], approved["changed"]) == ("approved", True)
    assert archived["status"] == seen["status"] == "archived"
