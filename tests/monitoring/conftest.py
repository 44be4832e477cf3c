import pytest

# The bridge's fixtures: the fake Bot API over real HTTP, and real qcluster worker processes.
from tests.telegram.conftest import fake_telegram, qcluster  # noqa: F401

from .scrape import METRICS_TOKEN


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_BEARER_TOKEN = METRICS_TOKEN
    return METRICS_TOKEN
