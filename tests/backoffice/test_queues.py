"""One broker per process and queue: django-q2 would build one, with a new connection, per task."""

import os

import pytest
from django_q.conf import Conf
from django_q.models import OrmQ

from backoffice import queues


@pytest.mark.django_db
def test_a_process_keeps_one_broker_per_queue():
    assert queues.broker() is queues.broker(Conf.CLUSTER_NAME)
    assert queues.broker("other-queue") is queues.broker("other-queue")
    assert queues.broker("other-queue") is not queues.broker()
    assert queues.broker("other-queue").list_key == "other-queue"


@pytest.mark.django_db
def test_a_forked_process_gets_brokers_of_its_own(monkeypatch):
    mine = queues.broker()
    monkeypatch.setattr(os, "getpid", lambda: -1)
    assert queues.broker() is not mine


@pytest.mark.django_db
def test_queue_puts_the_task_on_the_named_queue():
    queues.queue("monitoring.tasks.beat", queue_name="test-queues-named")

    [task] = OrmQ.objects.all()
    assert task.key == "test-queues-named"
