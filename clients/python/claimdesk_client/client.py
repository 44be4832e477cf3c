"""``Client``: the Claimdesk REST API as typed Python calls.

One ``requests`` session per kind of call, each with a urllib3 ``Retry``: reads, and writes that
carry an ``Idempotency-Key`` the client generates (the server answers a repeat with the stored
answer and does nothing again), are retried on connection errors and on 502/503/504 with
exponential backoff; a write without a key (a claim that waits in line, which the server refuses
with a key) is retried only when the connection failed before the request was sent.
"""

import functools
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar, cast

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import __version__
from .errors import Denied, Expired, NotApproved, NotFound, TimedOut, error_for
from .lease import Lease
from .types import Approval, AuditEvent, Claim, Grant, Job

P = ParamSpec("P")
R = TypeVar("R")

RETRY_STATUSES = (502, 503, 504)
# The server caps one wait at 30 s; each call asks for a little less.
WAIT_CALL_SECONDS = 25.0
APPROVED = {"approved", "executed"}


class Client:
    """A token's view of one Claimdesk server (``base_url`` without ``/api/v1/``)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        agent_id: str = "",
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.api_url = base_url.rstrip("/") + "/api/v1/"
        self.agent_id = agent_id
        self.timeout = timeout
        self._headers = {
            "Authorization": f"Token {token}",
            "Accept": "application/json",
            "User-Agent": f"claimdesk-client/{__version__}",
        }
        self._retrying = _session(
            Retry(
                total=retries,
                backoff_factor=backoff,
                status_forcelist=RETRY_STATUSES,
                allowed_methods=None,
                raise_on_status=False,
            )
        )
        self._once = _session(
            Retry(
                total=retries,
                connect=retries,
                read=0,
                status=0,
                other=0,
                backoff_factor=backoff,
                raise_on_status=False,
            )
        )

    def close(self) -> None:
        self._retrying.close()
        self._once.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- Claims ---------------------------------------------------------------------------

    def claim(
        self,
        story: str,
        todolist: str,
        *,
        agent_id: str | None = None,
        fingerprint: str = "",
        ttl: int | None = None,
        wait: int = 0,
        lease_token: str | None = None,
    ) -> Grant:
        """Take the lease on a work item (or refresh it, with the ``lease_token`` of a lease you
        hold); with ``wait`` seconds, queue for a busy one instead of raising ``Conflict``."""
        body: dict[str, Any] = {
            "story": story,
            "todolist": todolist,
            "agent_id": agent_id or self.agent_id or "claimdesk-client",
            "wait": wait,
        }
        if fingerprint:
            body["fingerprint"] = fingerprint
        if ttl is not None:
            body["ttl_seconds"] = ttl
        if lease_token:
            body["lease_token"] = lease_token
        # A waiting claim may not carry an Idempotency-Key; the wait is on top of the timeout.
        return cast(
            Grant,
            self._post("claims/", body, idempotent=not wait, timeout=self.timeout + wait),
        )

    def refresh(
        self,
        claim_id: int,
        lease_token: str,
        *,
        fencing_token: int | None = None,
        ttl: int | None = None,
    ) -> Claim:
        body = _proof(lease_token, fencing_token)
        if ttl is not None:
            body["ttl_seconds"] = ttl
        return cast(Claim, self._post(f"claims/{claim_id}/refresh/", body))

    def release(
        self, claim_id: int, lease_token: str, *, fencing_token: int | None = None
    ) -> Claim:
        return cast(
            Claim, self._post(f"claims/{claim_id}/release/", _proof(lease_token, fencing_token))
        )

    def inspect(self, claim_id: int | None = None, *, story: str = "", todolist: str = "") -> Claim:
        """The claim with ``claim_id``, or the one on ``story``/``todolist``."""
        if claim_id is not None:
            return cast(Claim, self._get(f"claims/{claim_id}/"))
        for claim in self.claims(story=story, todolist=todolist):
            return claim
        raise NotFound(404, {"error": "not_found", "detail": f"No claim on {story}/{todolist}."})

    def check(self, story: str, todolist: str, fencing_token: int) -> Claim:
        """The live lease if ``fencing_token`` is still its; else ``StaleFence``."""
        body = {"story": story, "todolist": todolist, "fencing_token": fencing_token}
        return cast(Claim, self._post("claims/check/", body))

    def claims(self, **filters: Any) -> Iterator[Claim]:
        """Every claim matching ``filters`` (owner, agent_id, story, todolist, state)."""
        return cast(Iterator[Claim], self._pages("claims/", filters))

    @contextmanager
    def lease(
        self,
        story: str,
        todolist: str,
        *,
        ttl: int | None = None,
        wait: int = 0,
        agent_id: str | None = None,
        fingerprint: str = "",
        refresh_every: float | None = None,
    ) -> Iterator[Lease]:
        """Hold the lease for the ``with`` block: acquired (waiting in line up to ``wait``
        seconds), refreshed in the background (every third of its TTL unless
        ``refresh_every``), released on the way out, also on an exception.

        If the lease is lost meanwhile, ``lease.lost`` is set and ``lease.check()`` raises
        ``LeaseLost``; a block that ends normally after losing it raises ``LeaseLost`` too.
        """
        grant = self.claim(
            story, todolist, agent_id=agent_id, fingerprint=fingerprint, ttl=ttl, wait=wait
        )
        held = Lease(self, grant, refresh_every=refresh_every)
        try:
            yield held
        except BaseException:
            held.close()
            raise
        held.close()
        held.check()

    # --- Approvals ------------------------------------------------------------------------

    def request_approval(
        self,
        kind: str,
        text: str,
        payload: dict[str, Any] | None = None,
        *,
        agent_id: str | None = None,
        claim: int | None = None,
    ) -> Approval:
        """Ask the approvers (``kind``: claim, command or manifest); answers at once, pending."""
        body: dict[str, Any] = {"kind": kind, "text": text}
        if payload is not None:
            body["payload"] = payload
        if agent_id or self.agent_id:
            body["agent_id"] = agent_id or self.agent_id
        if claim is not None:
            body["claim"] = claim
        return cast(Approval, self._post("approvals/", body))

    def approval(self, approval_id: str) -> Approval:
        """The request with this id (or its first six or more hex digits)."""
        return cast(Approval, self._get(f"approvals/{approval_id}/"))

    def approvals(self, **filters: Any) -> Iterator[Approval]:
        """Every request matching ``filters`` (status, kind, requester, created_after, ...)."""
        return cast(Iterator[Approval], self._pages("approvals/", filters))

    def wait_for_decision(self, approval_id: str, timeout: float = WAIT_CALL_SECONDS) -> Approval:
        """One bounded wait (at most the server's cap, 30 s): the request once decided, or as
        it is when the time is up."""
        return cast(
            Approval,
            self._get(
                f"approvals/{approval_id}/wait/",
                {"timeout": timeout},
                timeout=self.timeout + timeout,
            ),
        )

    def decide(self, approval_id: str, decision: str, note: str = "") -> Approval:
        """Vote ``approve`` or ``deny``, or ``postpone``/``reopen``; needs the decide permission."""
        return cast(Approval, self._post(f"approvals/{approval_id}/{decision}/", {"note": note}))

    def require_approval(
        self,
        kind: str,
        text: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout: float = 3600.0,
        agent_id: str | None = None,
        claim: int | None = None,
    ) -> Approval:
        """Ask and wait (in bounded calls) up to ``timeout`` seconds for the decision.

        Returns the approved request; raises ``Denied``, ``Expired``, or ``TimedOut`` (the request
        stays open: ``wait_for_decision`` with its id resumes).
        """
        deadline = time.monotonic() + timeout
        approval = self.request_approval(kind, text, payload, agent_id=agent_id, claim=claim)
        return self.await_approval(approval["id"], deadline - time.monotonic())

    def await_approval(self, approval_id: str, timeout: float) -> Approval:
        """Wait up to ``timeout`` seconds for an existing request's decision; as
        ``require_approval``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            approval = self.wait_for_decision(approval_id, min(WAIT_CALL_SECONDS, remaining))
            status = approval["status"]
            if status in APPROVED:
                return approval
            if status == "denied":
                raise Denied(f"Request {approval_id} was denied.", approval)
            if status == "expired":
                raise Expired(f"Request {approval_id} expired undecided.", approval)
            if status not in ("pending", "postponed"):
                raise NotApproved(f"Request {approval_id} is {status}.", approval)
            if deadline - time.monotonic() <= 0:
                raise TimedOut(f"Request {approval_id} is still {status}.", approval)

    def requires_approval(
        self,
        kind: str,
        text: str | Callable[..., str],
        payload: dict[str, Any] | Callable[..., dict[str, Any]] | None = None,
        *,
        timeout: float = 3600.0,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function so each call runs only once approved (``require_approval``).

        ``text`` and ``payload`` may be callables given the call's arguments, to say what this
        call will do.
        """

        def decorate(function: Callable[P, R]) -> Callable[P, R]:
            @functools.wraps(function)
            def approved_call(*args: P.args, **kwargs: P.kwargs) -> R:
                self.require_approval(
                    kind,
                    text(*args, **kwargs) if callable(text) else text,
                    payload(*args, **kwargs) if callable(payload) else payload,
                    timeout=timeout,
                )
                return function(*args, **kwargs)

            return approved_call

        return decorate

    # --- Jobs and the audit trail ----------------------------------------------------------

    def submit_job(
        self,
        manifest: dict[str, Any],
        *,
        live: bool = False,
        agent_id: str | None = None,
        callback_url: str = "",
    ) -> Job:
        """Submit a manifest (docs/automation.md); ``live`` runs it for real once approved, else
        a dry run. The answer names the job's approval request (``approval``): wait for it with
        ``await_approval``, then follow the job with ``job``. A ``callback_url`` hears the
        decision and the job's end (docs/callbacks.md)."""
        body: dict[str, Any] = {"manifest": manifest, "live": live}
        if agent_id or self.agent_id:
            body["agent_id"] = agent_id or self.agent_id
        if callback_url:
            body["callback_url"] = callback_url
        return cast(Job, self._post("jobs/", body))

    def job(self, job_id: str) -> Job:
        """The job with this id (or its first six or more hex digits), with its steps."""
        return cast(Job, self._get(f"jobs/{job_id}/"))

    def jobs(self, **filters: Any) -> Iterator[Job]:
        """Every job matching ``filters`` (status, name, ...), newest first."""
        return cast(Iterator[Job], self._pages("jobs/", filters))

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a job that has not ended (its submitter, or staff with the permission); the
        answer's ``changed`` is false when it was already cancelled."""
        return cast(Job, self._post(f"jobs/{job_id}/cancel/", {}))

    def audit_events(self, **filters: Any) -> Iterator[AuditEvent]:
        """The audit trail, oldest first (since, until, action, actor, source, object_type,
        object_id); needs the audit view permission."""
        return cast(Iterator[AuditEvent], self._pages("audit/", filters))

    # --- HTTP -----------------------------------------------------------------------------

    def _get(
        self, path: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        return self._call("GET", path, params=params, timeout=timeout)

    def _post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> Any:
        return self._call("POST", path, body=body, idempotent=idempotent, timeout=timeout)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool = True,
        timeout: float | None = None,
    ) -> Any:
        headers = dict(self._headers)
        if method == "POST" and idempotent:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        session = self._retrying if idempotent else self._once
        url = path if path.startswith(("http://", "https://")) else self.api_url + path
        response = session.request(
            method, url, params=params, json=body, headers=headers, timeout=timeout or self.timeout
        )
        try:
            answer = response.json()
        except ValueError:
            answer = {"error": "error", "detail": response.text[:500]}
        if response.status_code >= 400:
            raise error_for(response.status_code, answer if isinstance(answer, dict) else {})
        return answer

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[Any]:
        """Every item of a paged list, following ``next`` links."""
        url: str | None = path
        query: dict[str, Any] | None = {k: v for k, v in params.items() if v is not None}
        while url:
            page = self._get(url, query)
            yield from page["results"]
            url, query = page.get("next"), None


def _session(retry: Retry) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _proof(lease_token: str, fencing_token: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"lease_token": lease_token}
    if fencing_token is not None:
        body["fencing_token"] = fencing_token
    return body
