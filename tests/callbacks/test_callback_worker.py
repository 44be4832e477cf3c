"""End to end: a decision's callback goes out through a real ``qcluster`` worker."""

import json

from django.test import override_settings

from callbacks.models import Callback
from tests.api.conftest import client_with_token, token_for
from tests.telegram.worker import Workers, wait_for, worker_env

from .receiver import Receiver
from .test_callbacks import ask, decide


@override_settings(DEBUG=True, CALLBACK_ALLOWED_HOSTS=["127.0.0.1"])
def test_worker_posts_the_decision_after_commit_and_retries_a_500(
    transactional_db, approver, django_user_model, tmp_path
):
    agent = django_user_model.objects.create(username="agent-bot")
    agent_client = client_with_token(token_for(agent))
    receiver = Receiver(statuses=[500]).start()
    receiver.secret = agent_client.get("/api/v1/callbacks/secret/").json()["secret"]
    workers = Workers(
        tmp_path,
        worker_env(
            base_url="http://127.0.0.1:9",
            token="1:unused",  # pragma: allowlist secret
            DEBUG="1",
            CALLBACK_ALLOWED_HOSTS="127.0.0.1",
        ),
    )
    workers.start()
    try:
        asked = ask(agent_client, receiver.url).json()
        decide(asked["id"], approver)

        wait_for(
            lambda: Callback.objects.filter(status=Callback.Status.SENT).exists(),
            timeout=60,
            message=f"the callback to be sent\n{workers.output()}",
        )
    finally:
        workers.stop()
        receiver.stop()

    assert [received.verified for received in receiver.received] == [True, True]
    assert json.loads(receiver.received[1].body)["approval"]["status"] == "approved"
