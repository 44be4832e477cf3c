"""The ``claimdesk`` console script against a live server: JSON out, the CLI's exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

CLAIMDESK = Path(sys.executable).with_name("claimdesk")


@pytest.fixture
def claimdesk(server, agent_token, tmp_path):
    """Run ``claimdesk`` with the agent's token: (exit code, stdout JSON, stderr JSON)."""

    def run(*args, **env):
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "CLAIMDESK_URL": server,
            "CLAIMDESK_TOKEN": agent_token,
            **env,
        }
        done = subprocess.run(
            [str(CLAIMDESK), *args],
            env=environment,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        return done.returncode, _json(done.stdout), _json(done.stderr)

    return run


def _json(text):
    return json.loads(text) if text.strip() else None


def test_claim_refresh_inspect_and_release_exit_0(claimdesk):
    code, grant, _ = claimdesk("claim", "checkout", "payment-form", "--agent-id", "ci-1")
    assert (code, grant["outcome"], grant["holder"]) == (0, "acquired", "agent-bot (ci-1)")
    lease = {"CLAIMDESK_LEASE_TOKEN": grant["lease_token"]}
    code, refreshed, _ = claimdesk("refresh", str(grant["id"]), "--ttl", "120", **lease)
    assert (code, refreshed["ttl_seconds"]) == (0, 120)
    code, inspected, _ = claimdesk("inspect", "--story", "checkout", "--todolist", "payment-form")
    assert (code, inspected["id"]) == (0, grant["id"])
    code, released, _ = claimdesk("release", str(grant["id"]), **lease)
    assert (code, released["live"]) == (0, False)


def test_errors_exit_with_the_cli_codes(claimdesk, other_agent):
    held = other_agent.claim("checkout", "payment-form")
    code, _, error = claimdesk("claim", "checkout", "payment-form", "--agent-id", "ci-1")
    assert (code, error["error"]) == (3, "conflict")
    code, _, error = claimdesk(
        "release",
        str(held["id"]),
        "--lease-token",
        "clt_wrong",  # pragma: allowlist secret
    )
    assert (code, error["error"]) == (4, "not_holder")
    fence = str(held["fencing_token"] + 1)
    code, _, error = claimdesk("check", "checkout", "payment-form", "--fencing-token", fence)
    assert (code, error["error"]) == (3, "stale_fence")
    code, _, error = claimdesk("inspect", "999999")
    assert (code, error["error"]) == (5, "not_found")
    code, _, error = claimdesk("claim", "checkout", "other", "--ttl", "0")
    assert (code, error["error"]) == (2, "invalid")
    code, _, error = claimdesk("refresh", str(held["id"]))
    assert (code, error["error"]) == (2, "invalid")


def test_without_a_url_or_token_it_exits_2(claimdesk):
    code, _, error = claimdesk("inspect", "1", CLAIMDESK_TOKEN="")
    assert (code, error["detail"]) == (2, "set CLAIMDESK_TOKEN")


def test_request_then_wait_exits_6_undecided_0_approved_3_denied(claimdesk, approver_api):
    code, asked, _ = claimdesk("request", "command", "Restart worker-03", "--payload", '{"n": 3}')
    assert (code, asked["status"], asked["payload"]) == (0, "pending", {"n": 3})
    short_id = asked["id"][:8]
    code, pending, error = claimdesk("wait", short_id, "--timeout", "0.5")
    assert (code, pending["status"], error["error"]) == (6, "pending", "timedout")
    approver_api.decide(asked["id"], "approve")
    code, approved, _ = claimdesk("wait", short_id, "--timeout", "10")
    assert (code, approved["status"]) == (0, "approved")

    _, asked, _ = claimdesk("request", "command", "Drop the cache")
    approver_api.decide(asked["id"], "deny")
    code, denied, error = claimdesk("wait", asked["id"])
    assert (code, denied["status"], error["error"]) == (3, "denied", "denied")


def test_job_submit_and_show(claimdesk, tmp_path):
    manifest = tmp_path / "release.json"
    manifest.write_text(json.dumps({"name": "release", "steps": [{"id": "a", "argv": ["true"]}]}))
    code, submitted, _ = claimdesk("job", "submit", str(manifest), "--agent-id", "ci-1")
    assert (code, submitted["status"], submitted["agent_id"]) == (0, "awaiting_approval", "ci-1")
    assert submitted["approval"] and submitted["manifest_short"]
    code, shown, _ = claimdesk("job", "show", submitted["id"][:8])
    assert (code, shown["id"], shown["steps"][0]["id"]) == (0, submitted["id"], "a")


def test_job_submit_exits_2_for_a_bad_file_or_manifest(claimdesk, tmp_path):
    code, _, error = claimdesk("job", "submit", str(tmp_path / "missing.json"))
    assert (code, error["error"]) == (2, "invalid") and "cannot read" in error["detail"]
    (tmp_path / "bad.json").write_text('{"name": ""}')
    code, _, error = claimdesk("job", "submit", str(tmp_path / "bad.json"))
    assert (code, error["error"]) == (2, "invalid") and "name" in error["fields"]
    code, _, error = claimdesk("job", "show", "abcdef")
    assert (code, error["error"]) == (5, "not_found")
