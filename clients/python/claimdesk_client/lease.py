"""A lease held for a ``with`` block, refreshed by a background thread before it expires."""

import logging
import threading
import time
from typing import TYPE_CHECKING

import requests

from .errors import ClaimdeskError, Conflict, Forbidden, LeaseLost, NotFound
from .types import Grant

if TYPE_CHECKING:
    from .client import Client

logger = logging.getLogger(__name__)


class Lease:
    """The lease ``Client.lease()`` took: its ``claim_id``, ``fencing_token`` (hand it to what
    you change, so a writer that lost the lease is refused) and ``lease_token``.

    ``lost`` is set as soon as the lease is known to be gone: a refresh was refused (someone
    took it over, staff released it) or none succeeded before it expired. ``check()`` raises
    ``LeaseLost`` then; call it before each step that needs the lease.
    """

    def __init__(self, client: "Client", grant: Grant, *, refresh_every: float | None) -> None:
        self.claim_id = grant["id"]
        self.fencing_token = grant["fencing_token"]
        self.lease_token = grant["lease_token"] or ""
        self.grant = grant
        self.refresh_every = refresh_every or max(1.0, grant["ttl_seconds"] / 3)
        self.refreshes = 0
        self.lost = threading.Event()
        self.reason = ""
        self._client = client
        self._valid_until = time.monotonic() + grant["seconds_left"]
        self._stop = threading.Event()
        self._refresher = threading.Thread(
            target=self._keep_alive, name=f"lease-{self.claim_id}", daemon=True
        )
        self._refresher.start()

    def check(self) -> None:
        """Raise ``LeaseLost`` if the lease is gone (or ran out without a refresh)."""
        if not self.lost.is_set() and time.monotonic() >= self._valid_until:
            self._lose("the lease ran out before it could be refreshed")
        if self.lost.is_set():
            raise LeaseLost(f"Lost the lease on claim {self.claim_id}: {self.reason}")

    def close(self) -> None:
        """Stop refreshing and release the lease (a lost one is left alone)."""
        self._stop.set()
        self._refresher.join()
        if self.lost.is_set():
            return
        try:
            self._client.release(self.claim_id, self.lease_token, fencing_token=self.fencing_token)
        except (Conflict, Forbidden, NotFound) as error:
            self._lose(str(error))
        except (ClaimdeskError, requests.RequestException) as error:
            # Never in place of the block's own exception: the lease runs out at its TTL anyway.
            logger.warning(
                "Could not release claim %s (%s); it expires by itself", self.claim_id, error
            )

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.refresh_every):
            started = time.monotonic()
            try:
                claim = self._client.refresh(
                    self.claim_id, self.lease_token, fencing_token=self.fencing_token
                )
            except (Conflict, Forbidden, NotFound) as error:
                self._lose(str(error))
                return
            except (ClaimdeskError, requests.RequestException):
                # Retried at the next tick, while the lease lasts.
                if time.monotonic() >= self._valid_until:
                    self._lose("the lease ran out while the server could not be reached")
                    return
                continue
            self._valid_until = started + claim["seconds_left"]
            self.refreshes += 1

    def _lose(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()
