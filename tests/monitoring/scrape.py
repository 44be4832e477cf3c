"""Reading /metrics the way Prometheus does: the text format, parsed by prometheus-client."""

from prometheus_client.parser import text_string_to_metric_families

METRICS_TOKEN = "metrics-token-for-the-monitoring-tests"  # pragma: allowlist secret


def parse(text):
    """Every sample of a scrape: ``{(name, frozenset(labels)): value}``."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client):
    """GET /metrics with the bearer token; the samples, keyed as ``parse`` does."""
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]
