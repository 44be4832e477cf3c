"""The audit hash chain: how a link is computed and how a run of links is checked.

Plain Python with no Django, so that an export can be verified on any machine that has the key,
far from the database it came from::

    AUDIT_HMAC_KEY=... python3 audit/chain.py EXPORT.ndjson [--checkpoints FILE]

Each event's ``hash`` is HMAC-SHA256 over its predecessor's ``hash`` followed by a canonical
encoding of its own fields, keyed with ``AUDIT_HMAC_KEY``: whoever can write the database but does
not hold the key cannot make an altered, inserted or deleted event fit the chain again. A
checkpoint (the chain head's sequence number, hash and time) is signed with the same key and
published outside the database, so it proves that everything up to it existed at that time.

It prints a JSON report on stdout; the exit code is 0 when the export is intact, 1 at the first
broken link (named in the report), 2 for unusable input.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# The predecessor of the first event.
GENESIS = "0" * 64
# The fields a link's hash covers, in the order an export writes them.
FIELDS = (
    "seq",
    "timestamp",
    "actor_id",
    "actor_label",
    "action",
    "source",
    "object_type",
    "object_id",
    "trace_id",
    "details",
)
CHECKPOINT_FIELDS = ("seq", "hash", "timestamp")
# Keeps a checkpoint's signature from ever being mistaken for an event's hash.
CHECKPOINT_DOMAIN = b"claimdesk-audit-checkpoint\n"


@lru_cache(maxsize=4)
def keyed(key: bytes) -> hmac.HMAC:
    """HMAC state with the key already absorbed; each link copies it rather than re-keying."""
    return hmac.new(key, digestmod=hashlib.sha256)


# The canonical encoding: sorted keys, no spaces, UTF-8 (not escaped). Made once: json.dumps
# would build an encoder for these options again on every link written or verified.
CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(values: Mapping[str, Any], fields: Iterable[str] = FIELDS) -> bytes:
    """One byte string per set of values: sorted keys, no spaces, UTF-8."""
    return CANONICAL_JSON.encode({name: values[name] for name in fields}).encode()


def link_hash(key: bytes, prev_hash: str, values: Mapping[str, Any]) -> str:
    state = keyed(key).copy()
    state.update(prev_hash.encode())
    state.update(canonical(values))
    return state.hexdigest()


def checkpoint_signature(key: bytes, checkpoint: Mapping[str, Any]) -> str:
    state = keyed(key).copy()
    state.update(CHECKPOINT_DOMAIN)
    state.update(canonical(checkpoint, CHECKPOINT_FIELDS))
    return state.hexdigest()


@dataclass(frozen=True)
class Break:
    """The first broken link: where, when, and what differs."""

    seq: int
    timestamp: str
    problem: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "timestamp": self.timestamp, "problem": self.problem}


@dataclass
class Walk:
    """Checks links handed to it in sequence order and keeps the first break.

    ``start_seq`` and ``start_hash`` anchor the walk: the sequence number expected first and its
    predecessor's hash (the genesis for a walk from the beginning, a checkpoint's hash for a walk
    since that checkpoint). ``start_hash=None`` trusts the first link's ``prev_hash``, as for an
    export that begins mid-chain.
    """

    key: bytes
    start_seq: int | None = 1
    start_hash: str | None = GENESIS
    checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    last_timestamp: str = ""
    broken: Break | None = None

    def add(self, link: Mapping[str, Any]) -> bool:
        """Check one link; False once the chain is broken (later links prove nothing more)."""
        if self.broken:
            return False
        seq, timestamp = int(link["seq"]), str(link["timestamp"])
        expected_seq = self.last_seq + 1 if self.checked else self.start_seq
        expected_prev = self.last_hash if self.checked else self.start_hash
        problem = None
        if expected_seq is not None and seq != expected_seq:
            problem = (
                f"sequence {expected_seq} is missing (next comes {seq}): events were deleted"
                if seq > expected_seq
                else f"sequence {seq} comes again or out of order (expected {expected_seq})"
            )
        elif expected_prev is not None and link["prev_hash"] != expected_prev:
            problem = (
                f"prev_hash {link['prev_hash']} is not the hash of the event before, "
                f"{expected_prev}: an event was removed, inserted or rewritten before it"
            )
        else:
            computed = link_hash(self.key, link["prev_hash"], link)
            if not hmac.compare_digest(computed, str(link["hash"])):
                problem = (
                    f"stored hash {link['hash']} differs from the hash of its fields, "
                    f"{computed}: the event was changed after it was written (or the key is "
                    "not the one it was written with)"
                )
        if problem:
            self.broken = Break(seq, timestamp, problem)
            return False
        self.checked += 1
        self.last_seq, self.last_hash, self.last_timestamp = seq, str(link["hash"]), timestamp
        return True

    def walk(self, links: Iterable[Mapping[str, Any]]) -> Walk:
        for link in links:
            if not self.add(link):
                break
        return self


def checkpoint_problem(
    key: bytes, checkpoint: Mapping[str, Any], hashes: Mapping[int, str], covered_up_to: int
) -> str | None:
    """Why ``checkpoint`` contradicts the chain (None if it does not).

    ``hashes`` maps the sequence numbers the walk saw to their hash; ``covered_up_to`` is the
    highest sequence number the walk reached. A checkpoint beyond it means events that existed
    when it was published are gone.
    """
    signature = checkpoint_signature(key, checkpoint)
    seq = int(checkpoint["seq"])
    if not hmac.compare_digest(signature, str(checkpoint.get("signature", ""))):
        return f"checkpoint at sequence {seq} has a bad signature (forged, or another key)"
    if seq > covered_up_to:
        return (
            f"checkpoint of {checkpoint['timestamp']} vouches for sequence {seq}, "
            f"but the chain ends at {covered_up_to}: events were deleted from the end"
        )
    if seq in hashes and hashes[seq] != checkpoint["hash"]:
        return (
            f"checkpoint of {checkpoint['timestamp']} says sequence {seq} had hash "
            f"{checkpoint['hash']}, the chain has {hashes[seq]}"
        )
    return None


def read_ndjson(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"line {number} is not JSON: {error}") from error


def verify_export(
    key: bytes, links: Iterable[Mapping[str, Any]], checkpoints: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Walk an export (which may begin mid-chain), hold it against the published checkpoints
    that fall inside it, and report: ``ok``, how many links were checked, the last sequence number
    and, if broken, where and why."""
    wanted = {int(c["seq"]): c for c in checkpoints}
    seen: dict[int, str] = {}
    walk = Walk(key, start_seq=None, start_hash=None)
    first_seq: int | None = None
    for link in links:
        if not walk.add(link):
            break
        first_seq = walk.last_seq if first_seq is None else first_seq
        if walk.last_seq in wanted:
            seen[walk.last_seq] = walk.last_hash
    broken = walk.broken
    for seq, checkpoint in sorted(wanted.items()):
        if broken is None and first_seq is not None and first_seq <= seq <= walk.last_seq:
            problem = checkpoint_problem(key, checkpoint, seen, walk.last_seq)
            if problem:
                broken = Break(seq, str(checkpoint["timestamp"]), problem)
    report: dict[str, Any] = {
        "ok": broken is None,
        "checked": walk.checked,
        "last_seq": walk.last_seq,
    }
    if broken:
        report["broken"] = broken.as_dict()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Verify an NDJSON export of the Claimdesk audit trail (manage.py "
        "audit_export --format ndjson). The key comes from AUDIT_HMAC_KEY or --key-file."
    )
    parser.add_argument("export", help="the NDJSON export; - for stdin")
    parser.add_argument("--key-file", help="file holding AUDIT_HMAC_KEY (trailing newline ignored)")
    parser.add_argument("--checkpoints", help="published checkpoints (AUDIT_CHECKPOINT_FILE)")
    options = parser.parse_args(argv)
    try:
        key = os.environ.get("AUDIT_HMAC_KEY", "")
        if options.key_file:
            with open(options.key_file, encoding="utf-8") as file:
                key = file.read().rstrip("\n")
        if not key:
            parser.error("set AUDIT_HMAC_KEY or pass --key-file")
        checkpoints: list[dict[str, Any]] = []
        if options.checkpoints:
            with open(options.checkpoints, encoding="utf-8") as file:
                checkpoints = list(read_ndjson(file))
        source = sys.stdin if options.export == "-" else open(options.export, encoding="utf-8")  # noqa: SIM115
        with source:
            report = verify_export(key.encode(), read_ndjson(source), checkpoints)
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(json.dumps({"error": "unusable input", "detail": str(error)}), file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
