"""The CI workflow parses, runs every leg of .ci/run, and deploys only through the gated
production environment."""

import re
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]


def workflow():
    return yaml.safe_load((PROJECT / ".github" / "workflows" / "ci.yml").read_text())


def ci_run_legs():
    script = (PROJECT / ".ci" / "run").read_text()
    return re.findall(r"^\s+([a-z-]+)\) leg ", script, re.M)


def test_the_matrix_names_every_leg_of_ci_run():
    test = workflow()["jobs"]["test"]

    assert test["strategy"]["matrix"]["leg"] == ci_run_legs()
    assert ci_run_legs() == ["sqlite-orm", "postgres-orm", "postgres-redis"]
    assert test["steps"][-1]["run"] == ".ci/run ${{ matrix.leg }}"
    assert test["container"] == "debian:bookworm"


def test_postgres_and_redis_are_declared_as_services():
    test = workflow()["jobs"]["test"]

    assert set(test["services"]) == {"postgres", "redis"}
    assert test["env"]["CI_DATABASE_URL"].startswith("postgres://")
    assert not test["env"]["TEST_REDIS_URL"].endswith("/0")


def test_deploy_waits_for_every_leg_and_the_production_environment():
    deploy = workflow()["jobs"]["deploy"]

    assert deploy["needs"] == "test"
    assert deploy["environment"]["name"] == "production"
    assert "refs/heads/main" in deploy["if"]
