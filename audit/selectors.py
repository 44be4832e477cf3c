"""Reading the audit trail, and checking its hash chain."""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import models

from backoffice.errors import InvalidInput
from backoffice.timestamps import iso_utc

from . import chain
from .models import AuditEvent, ChainHead, Checkpoint

# What an event shows of itself in the chain and in an export, in that order.
LINK_COLUMNS = (*chain.FIELDS, "prev_hash", "hash")
# Rows fetched at a time while walking or exporting: memory stays flat however long the chain.
CHUNK_SIZE = 2000


def events_for(obj: models.Model) -> models.QuerySet[AuditEvent]:
    """Events about one object, oldest first."""
    return AuditEvent.objects.filter(
        object_type=obj._meta.label_lower, object_id=str(obj.pk)
    ).order_by("timestamp", "id")


def chain_head() -> ChainHead:
    """Where the chain ends, as committed; the genesis while nothing was written (the head row
    is made by the first write after a database was emptied)."""
    return ChainHead.objects.filter(pk=1).first() or ChainHead(pk=1, seq=0, hash=chain.GENESIS)


def link_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """An event's fields as the chain hashes them and an export writes them."""
    values = {name: row[name] for name in LINK_COLUMNS}
    values["timestamp"] = iso_utc(row["timestamp"])
    return values


def links(events: models.QuerySet[AuditEvent]) -> Iterator[dict[str, Any]]:
    """``events`` in chain order, as links, streamed."""
    for row in events.order_by("seq").values(*LINK_COLUMNS).iterator(chunk_size=CHUNK_SIZE):
        yield link_values(row)


def links_between(since: datetime | None, until: datetime | None) -> Iterator[dict[str, Any]]:
    """The unbroken run of links from the first event at or after ``since`` to the last one
    before ``until``: a run of the chain, so an export of it can be verified on its own."""
    events = AuditEvent.objects.all()
    if since is not None:
        first = events.filter(timestamp__gte=since).order_by("timestamp", "seq").first()
        events = events.filter(seq__gte=first.seq) if first else events.none()
    if until is not None:
        last = events.filter(timestamp__lt=until).order_by("-timestamp", "-seq").first()
        events = events.filter(seq__lte=last.seq) if last else events.none()
    return links(events)


def published_checkpoints(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The checkpoints in the file (``AUDIT_CHECKPOINT_FILE`` unless ``path``) and those the
    database keeps, oldest first; a published one is what a checkpoint in the database must match.
    """
    found = [
        {"seq": c.seq, "hash": c.hash, "timestamp": iso_utc(c.timestamp), "signature": c.signature}
        for c in Checkpoint.objects.order_by("seq", "id")
    ]
    path = path or settings.AUDIT_CHECKPOINT_FILE
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                found += list(chain.read_ndjson(file))
        except FileNotFoundError:
            if path != settings.AUDIT_CHECKPOINT_FILE:
                raise InvalidInput({"checkpoints": f"no such file: {path}"}) from None
        except (OSError, ValueError) as error:
            raise InvalidInput({"checkpoints": f"{path}: {error}"}) from None
    return sorted(found, key=lambda c: int(c["seq"]))


@dataclass
class Verification:
    """What ``verify`` found: how far the chain holds, and its first broken link if any."""

    checked: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    since: int = 0
    broken: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "ok": self.broken is None,
            "checked": self.checked,
            "last_seq": self.last_seq,
            "checkpoints_checked": self.checkpoints,
        }
        if self.since:
            report["since_checkpoint"] = self.since
        if self.broken:
            report["broken"] = self.broken
        return report


def choose_checkpoint(checkpoints: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    """The checkpoint ``wanted`` names, by sequence number or ``latest``; its signature must hold,
    or a forged one could hide everything before it."""
    key = settings.AUDIT_HMAC_KEY.encode()
    valid = [c for c in checkpoints if chain.checkpoint_signature(key, c) == c.get("signature")]
    if wanted == "latest":
        if not valid:
            raise InvalidInput({"since_checkpoint": "there is no valid checkpoint yet"})
        return valid[-1]
    try:
        seq = int(wanted)
    except ValueError:
        raise InvalidInput({"since_checkpoint": "a sequence number or 'latest'"}) from None
    for candidate in valid:
        if int(candidate["seq"]) == seq:
            return candidate
    raise InvalidInput({"since_checkpoint": f"no validly signed checkpoint at sequence {seq}"})


def verify(
    checkpoints: Iterable[Mapping[str, Any]], since: Mapping[str, Any] | None = None
) -> Verification:
    """Walk the chain in the database (from ``since``, a checkpoint, or from the start) and hold
    it against the chain head and ``checkpoints``; stop at the first broken link."""
    key = settings.AUDIT_HMAC_KEY.encode()
    result = Verification()
    # Read before the walk: events appended meanwhile only lengthen what the walk sees.
    head = chain_head()
    events = AuditEvent.objects.all()
    if since is None:
        walk = chain.Walk(key)
    else:
        result.since = int(since["seq"])
        walk = chain.Walk(key, start_seq=result.since + 1, start_hash=str(since["hash"]))
        events = events.filter(seq__gt=result.since)
    wanted = [c for c in checkpoints if int(c["seq"]) > result.since]
    seqs = {int(c["seq"]) for c in wanted}
    hashes: dict[int, str] = {}
    for link in links(events):
        if not walk.add(link):
            break
        if walk.last_seq in seqs:
            hashes[walk.last_seq] = walk.last_hash
    result.checked = walk.checked
    result.last_seq = walk.last_seq or result.since
    if walk.broken:
        result.broken = walk.broken.as_dict()
        return result
    if head.seq > result.last_seq:
        result.broken = {
            "seq": result.last_seq + 1,
            "timestamp": "",
            "problem": f"the chain head says the chain reaches sequence {head.seq}, but it ends "
            f"at {result.last_seq}: events were deleted from the end",
        }
        return result
    for checkpoint in wanted:
        problem = chain.checkpoint_problem(key, checkpoint, hashes, result.last_seq)
        if problem:
            result.broken = {
                "seq": int(checkpoint["seq"]),
                "timestamp": str(checkpoint["timestamp"]),
                "problem": problem,
            }
            return result
        result.checkpoints += 1
    return result
