"""The test suite shares a machine with a running Claimdesk: it keeps off Redis database 0, the
default queue and the production key prefixes, and its tools are pinned."""

import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

PROJECT = Path(__file__).resolve().parents[2]


def test_tests_use_a_redis_database_of_their_own(settings):
    assert urlsplit(settings.TEST_REDIS_URL).path.strip("/") not in {"", "0"}


def test_tests_use_a_queue_and_cache_prefix_of_their_own(settings):
    assert settings.Q_CLUSTER["name"] != "claimdesk"
    assert settings.CACHE_KEY_PREFIX != "claimdesk"


def test_no_test_connects_to_redis_database_0():
    local_database_0 = re.compile(r"redis://(127\.0\.0\.1|localhost)(:\d+)?/0\b")
    offenders = [
        str(path.relative_to(PROJECT))
        for path in (PROJECT / "tests").rglob("*.py")
        if local_database_0.search(path.read_text())
    ]
    assert not offenders


def test_ruff_is_pinned_and_pre_commit_runs_the_same_release():
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    [ruff] = [spec for spec in project["optional-dependencies"]["dev"] if spec.startswith("ruff")]
    version = ruff.removeprefix("ruff==")

    assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"pin ruff to one release, not {ruff!r}"
    assert f"rev: v{version}" in (PROJECT / ".pre-commit-config.yaml").read_text()
