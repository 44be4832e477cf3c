import pytest

from .scrape import METRICS_TOKEN


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_BEARER_TOKEN = METRICS_TOKEN
    return METRICS_TOKEN
