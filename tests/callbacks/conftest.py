"""The callbacks tests' receiver."""

import pytest

from .receiver import Receiver


@pytest.fixture
def receiver(settings):
    """A receiver on 127.0.0.1, allowed as a callback host (plain http: DEBUG on)."""
    settings.DEBUG = True
    settings.CALLBACK_ALLOWED_HOSTS = ["127.0.0.1"]
    receiver = Receiver().start()
    yield receiver
    receiver.stop()
