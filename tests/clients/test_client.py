"""``claimdesk_client.Client`` against a live server: claims, approvals, leases, errors."""

import threading
from importlib.metadata import version

import claimdesk_client
import pytest
from claimdesk_client import (
    Conflict,
    Denied,
    Invalid,
    LeaseLost,
    NotFound,
    NotHolder,
    StaleFence,
    TimedOut,
)

from automation.models import Job
from claims import services
from tests.telegram.worker import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_client_is_versioned_with_the_api(settings):
    assert claimdesk_client.__version__ == settings.SPECTACULAR_SETTINGS["VERSION"]
    assert version("claimdesk-client") == claimdesk_client.__version__


def decide_when_asked(approver_api, decision):
    """Decide the first pending request as soon as it appears, from another thread."""

    def decide():
        pending = wait_for(
            lambda: list(approver_api.approvals(status="pending")), message="a pending request"
        )
        approver_api.decide(pending[0]["id"], decision, note="seen")

    thread = threading.Thread(target=decide)
    thread.start()
    return thread


def test_a_lease_is_claimed_refreshed_inspected_and_released(agent):
    grant = agent.claim("checkout", "payment-form", ttl=60)
    assert (grant["outcome"], grant["holder"]) == ("acquired", "agent-bot (agent-7)")
    refreshed = agent.refresh(grant["id"], grant["lease_token"], ttl=120)
    assert refreshed["ttl_seconds"] == 120
    assert agent.inspect(story="checkout", todolist="payment-form")["id"] == grant["id"]
    assert agent.check("checkout", "payment-form", grant["fencing_token"])["live"]
    released = agent.release(grant["id"], grant["lease_token"])
    assert not released["live"]
    assert not agent.inspect(grant["id"])["live"]


def test_the_apis_error_codes_become_exceptions(agent, other_agent):
    grant = agent.claim("checkout", "payment-form")
    with pytest.raises(Conflict) as held:
        other_agent.claim("checkout", "payment-form")
    assert held.value.body["holder"] == {"owner": "agent-bot", "agent_id": "agent-7"}
    with pytest.raises(NotHolder):
        other_agent.release(grant["id"], "clt_not-the-token")  # pragma: allowlist secret
    with pytest.raises(StaleFence) as stale:
        agent.check("checkout", "payment-form", grant["fencing_token"] + 1)
    assert stale.value.body["fencing_token"] == grant["fencing_token"]
    with pytest.raises(Invalid) as invalid:
        agent.claim("checkout", "other", ttl=0)
    assert "ttl_seconds" in invalid.value.fields
    with pytest.raises(NotFound):
        agent.inspect(999_999)
    with pytest.raises(NotFound):
        agent.inspect(story="nothing", todolist="here")


def test_require_approval_returns_the_approved_request(agent, approver_api):
    approving = decide_when_asked(approver_api, "approve")
    approval = agent.require_approval(
        "command", "Restart worker-03", {"cmd": "systemctl restart worker"}, timeout=20
    )
    approving.join()
    assert (approval["status"], approval["decided_by"]) == ("approved", "approver")
    assert approval["agent_id"] == "agent-7"


def test_require_approval_raises_denied(agent, approver_api):
    denying = decide_when_asked(approver_api, "deny")
    with pytest.raises(Denied) as denied:
        agent.require_approval("command", "Drop the cache", timeout=20)
    denying.join()
    assert denied.value.approval["status"] == "denied"


def test_require_approval_times_out_and_leaves_the_request_open(agent):
    with pytest.raises(TimedOut) as timed_out:
        agent.require_approval("command", "Rotate the keys", timeout=0.5)
    approval_id = timed_out.value.approval["id"]
    assert agent.approval(approval_id)["status"] == "pending"


def test_a_decorated_function_runs_only_once_approved(agent, approver_api):
    ran = []

    @agent.requires_approval(
        "command",
        lambda host: f"Reboot {host}",
        lambda host: {"host": host},
        timeout=20,
    )
    def reboot(host):
        ran.append(host)
        return f"{host} rebooted"

    approving = decide_when_asked(approver_api, "approve")
    assert reboot("worker-03") == "worker-03 rebooted"
    approving.join()
    [asked] = agent.approvals(status="approved")
    assert (asked["text"], asked["payload"]) == ("Reboot worker-03", {"host": "worker-03"})

    denying = decide_when_asked(approver_api, "deny")
    with pytest.raises(Denied):
        reboot("worker-04")
    denying.join()
    assert ran == ["worker-03"]


def test_a_lease_is_refreshed_in_the_background_and_released_at_the_end(agent):
    with agent.lease("checkout", "deploy", ttl=2, refresh_every=0.2) as lease:
        wait_for(lambda: lease.refreshes >= 2, timeout=10, message="two refreshes")
        lease.check()
        assert agent.check("checkout", "deploy", lease.fencing_token)["live"]
    claim = agent.inspect(lease.claim_id)
    assert not claim["live"] and claim["released_at"]


def test_a_lease_is_released_when_the_body_raises(agent):
    with pytest.raises(RuntimeError), agent.lease("checkout", "deploy", ttl=30) as lease:
        raise RuntimeError("the deploy failed")
    assert not agent.inspect(lease.claim_id)["live"]


def test_a_lost_lease_is_noticed_by_the_body_and_at_the_end(agent, supervisor_actor):
    with pytest.raises(LeaseLost), agent.lease("checkout", "deploy", refresh_every=0.2) as lease:
        services.force_release(lease.claim_id, actor=supervisor_actor, reason="stuck deploy")
        assert lease.lost.wait(timeout=10)
        with pytest.raises(LeaseLost):
            lease.check()
    assert lease.reason
    assert not agent.inspect(lease.claim_id)["live"]


def test_the_audit_trail_is_read_page_by_page(agent, auditor_api):
    grant = agent.claim("checkout", "payment-form")
    agent.release(grant["id"], grant["lease_token"])
    actions = [event["action"] for event in auditor_api.audit_events(page_size=1)]
    assert actions[-2:] == ["claim.acquired", "claim.released"]


RELEASE = {"name": "release", "steps": [{"id": "tag", "argv": ["echo", "v1"]}]}


def test_a_job_is_submitted_approved_followed_and_cancelled(agent, approver_api):
    submitted = agent.submit_job(RELEASE, callback_url="https://hooks.example.com/jobs")
    assert (submitted["status"], submitted["mode"]) == ("awaiting_approval", "dry_run")
    assert submitted["agent_id"] == "agent-7" and submitted["manifest_short"]

    approver_api.decide(submitted["approval"], "approve")
    assert agent.await_approval(submitted["approval"], 10)["status"] == "approved"
    queued = agent.job(submitted["short_id"])
    assert (queued["id"], queued["status"]) == (submitted["id"], "queued")
    assert [job["id"] for job in agent.jobs(status="queued")] == [submitted["id"]]
    cancelled = agent.cancel_job(submitted["id"])
    assert (cancelled["status"], cancelled["changed"]) == ("cancelled", True)
    assert agent.cancel_job(submitted["id"])["changed"] is False
    target = Job.objects.get().callback_target
    assert target.url == "https://hooks.example.com/jobs"


def test_a_bad_manifest_or_callback_url_is_invalid(agent):
    with pytest.raises(Invalid) as invalid:
        agent.submit_job({"name": "", "steps": []})
    assert {"name", "steps"} <= set(invalid.value.fields)
    with pytest.raises(Invalid) as bad_url:
        agent.submit_job(RELEASE, callback_url="https://169.254.169.254/")
    assert "callback_url" in bad_url.value.fields
    with pytest.raises(NotFound):
        agent.job("abcdef")
    assert not Job.objects.exists()
