"""The task queue's broker: one per process and queue, handed to every ``async_task``.

django-q2 builds a new broker for each task it is not handed one for, and with Redis that is a
new connection pool, so a new TCP connection, per task. Every decision queues a delivery after
commit, so on the approve path that cost more than any of the decision's own statements.
"""

import os
from functools import lru_cache
from typing import Any

from django_q.brokers import Broker, get_broker
from django_q.conf import Conf
from django_q.tasks import async_task


def broker(queue_name: str | None = None) -> Broker:
    """This process's broker for ``queue_name`` (default: the cluster's own queue)."""
    return _broker_for(os.getpid(), queue_name or Conf.CLUSTER_NAME)


@lru_cache(maxsize=8)
def _broker_for(pid: int, queue_name: str) -> Broker:
    # Per process, since a forked worker must not share its parent's connections.
    return get_broker(queue_name)


def queue(task: str, *args: Any, queue_name: str | None = None, **options: Any) -> str:
    """``async_task`` on this process's broker for ``queue_name``; returns the task's id."""
    return async_task(task, *args, broker=broker(queue_name), **options)
