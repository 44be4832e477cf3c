"""The audit trail as a tamper-evident hash chain: what the database refuses, what the verifier
finds when rows are changed or removed behind the application's back, and exports verified offline.
"""

import json
import subprocess
import sys
import threading
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import ManagementUtility, call_command
from django.db import connection, transaction
from django.db.utils import DatabaseError
from model_bakery import baker

from audit import chain, services, tasks
from audit.errors import ChainBroken
from audit.models import AuditEvent, ChainHead, Checkpoint
from audit.selectors import link_values
from audit.services import record
from backoffice.actors import Actor, Source, system_actor
from backoffice.errors import InvalidInput

PROJECT = Path(__file__).resolve().parents[2]
TABLE = AuditEvent._meta.db_table


def write_events(count, actor=None):
    actor = actor or Actor(source=Source.SYSTEM, label="test")
    return [
        record(
            "claim.acquired", actor=actor, object_type="claims.claim", object_id=n, details={"n": n}
        )
        for n in range(count)
    ]


def behind_the_orms_back(sql, *params):
    """Run ``sql`` on the audit table as someone with database access would, the append-only
    trigger disabled (PostgreSQL) for the statement."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_append_only")
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER audit_append_only")


def verify(*args):
    """``manage.py audit_verify`` in-process: its JSON report and the error it raised, if any."""
    out = StringIO()
    try:
        call_command("audit_verify", *args, stdout=out)
        error = None
    except ChainBroken as broken:
        error = broken
    return json.loads(out.getvalue()), error


def chain_timestamp(event):
    """The event's time as the chain (and an export) writes it."""
    return link_values(event.__dict__)["timestamp"]


def exit_code_of(*argv):
    """The exit code of ``manage.py`` run from the command line, in this process."""
    try:
        ManagementUtility(["manage.py", *argv]).execute()
    except SystemExit as leaving:
        return leaving.code
    return 0


# --- The chain ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_event_links_to_the_one_before_and_the_chain_verifies():
    events = write_events(3)

    assert [e.seq for e in events] == [1, 2, 3]
    assert events[0].prev_hash == chain.GENESIS
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:2]]
    head = ChainHead.objects.get()
    assert (head.seq, head.hash) == (3, events[-1].hash)
    report, error = verify()
    assert error is None
    assert report == {"ok": True, "checked": 3, "last_seq": 3, "checkpoints_checked": 0}


@pytest.mark.django_db
def test_a_rolled_back_event_leaves_no_hole_in_the_chain():
    write_events(1)
    with pytest.raises(RuntimeError), transaction.atomic():
        write_events(1)
        raise RuntimeError("the change failed")
    write_events(1)

    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2]
    assert verify()[1] is None


# A lone surrogate passes the JSON round trip but not the UTF-8 of the hash: record() fails after
# the head's UPDATE has taken the event's seq.
UNENCODABLE = {"note": "\ud800"}


@pytest.mark.django_db
def test_an_event_failing_after_it_took_its_seq_keeps_the_callers_transaction_from_committing():
    write_events(1)
    with transaction.atomic():
        with pytest.raises(UnicodeEncodeError):
            record("claim.acquired", actor=system_actor(), object_id="1", details=UNENCODABLE)
        assert transaction.get_rollback()
    write_events(1)

    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2]
    assert verify()[1] is None


@pytest.mark.django_db(transaction=True)
def test_an_event_failing_outside_a_transaction_leaves_no_hole_in_the_chain():
    write_events(1)
    with pytest.raises(UnicodeEncodeError):
        record("claim.acquired", actor=system_actor(), object_id="1", details=UNENCODABLE)
    write_events(1)

    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2]
    assert verify()[1] is None


@pytest.mark.django_db
def test_deleting_a_user_never_rewrites_their_audit_events():
    user = baker.make("auth.User", username="leaver")
    event = record("claim.acquired", actor=Actor(source=Source.API, user=user), object_id="1")

    user_id = user.pk
    user.delete()

    kept = AuditEvent.objects.get(pk=event.pk)
    assert (kept.actor_id, kept.actor_label, kept.hash) == (user_id, "leaver", event.hash)
    assert verify()[1] is None


@pytest.mark.django_db
def test_the_key_decides_the_hash(settings):
    settings.AUDIT_HMAC_KEY = (
        "another-audit-key-of-at-least-32-characters"  # pragma: allowlist secret
    )
    write_events(1)
    settings.AUDIT_HMAC_KEY = (
        "a-third-audit-key-of-at-least-32-characters"  # pragma: allowlist secret
    )

    report, error = verify()

    assert error is not None
    assert "the key is not the one it was written with" in report["broken"]["problem"]


# --- What the database refuses (PostgreSQL) ------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        f"UPDATE {TABLE} SET action = 'claim.released'",
        f"DELETE FROM {TABLE}",
        f"TRUNCATE {TABLE}",
    ],
    ids=["update", "delete", "truncate"],
)
def test_postgresql_refuses_to_change_or_remove_audit_events(statement):
    write_events(2)

    refused = pytest.raises(DatabaseError, match="append-only")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        # tests/conftest.py lets the test database's flushes through; not this TRUNCATE.
        cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER audit_no_truncate")
        cursor.execute(statement)

    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["claim.acquired"] * 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_parallel_writers_on_postgresql_make_one_valid_chain():
    writers, each = 8, 25
    barrier = threading.Barrier(writers)
    failures = []

    def write(n):
        try:
            barrier.wait(timeout=30)
            for i in range(each):
                with transaction.atomic():
                    record("claim.acquired", actor=system_actor(f"writer-{n}"), object_id=i)
        except Exception as error:  # the test reports every writer's failure
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    report, error = verify()
    assert error is None
    assert (report["checked"], report["last_seq"]) == (writers * each, writers * each)


# --- What the verifier finds ---------------------------------------------------------------


@pytest.mark.django_db
def test_verifier_names_the_event_altered_behind_the_orms_back():
    events = write_events(5)
    behind_the_orms_back(
        f"UPDATE {TABLE} SET details = %s WHERE seq = 3",
        json.dumps({"n": 99}),
    )

    report, error = verify()

    assert error is not None
    broken = report["broken"]
    assert broken["seq"] == 3
    assert broken["timestamp"] == chain_timestamp(events[2])
    assert "changed after it was written" in broken["problem"]
    assert "sequence 3" in error.message
    assert exit_code_of("audit_verify") == 1


@pytest.mark.django_db
def test_verifier_finds_the_gap_a_deleted_event_leaves():
    write_events(5)
    behind_the_orms_back(f"DELETE FROM {TABLE} WHERE seq = 2")

    report, error = verify()

    assert error is not None
    assert report["broken"]["seq"] == 3
    assert "sequence 2 is missing" in report["broken"]["problem"]


@pytest.mark.django_db
def test_verifier_finds_events_deleted_from_the_end(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.ndjson")
    write_events(4)
    services.checkpoint(actor=system_actor())
    behind_the_orms_back(f"DELETE FROM {TABLE} WHERE seq >= 3")
    # Even with the head row put back by someone who can write the database:
    ChainHead.objects.update(seq=2, hash=AuditEvent.objects.get(seq=2).hash)

    report, error = verify()

    assert error is not None
    assert report["broken"]["seq"] == 4
    assert "the chain ends at 2" in report["broken"]["problem"]


# --- Checkpoints ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_checkpoint_is_signed_appended_to_the_file_and_only_made_when_the_chain_grew(
    settings, tmp_path
):
    published = tmp_path / "audit" / "checkpoints.ndjson"
    settings.AUDIT_CHECKPOINT_FILE = str(published)
    events = write_events(2)

    made = services.checkpoint(actor=system_actor())
    again = services.checkpoint(actor=system_actor())
    write_events(1)
    later = services.checkpoint(actor=system_actor())

    assert (made.seq, made.hash, again) == (2, events[-1].hash, None)
    lines = [json.loads(line) for line in published.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [2, 3]
    assert lines[0]["signature"] == chain.checkpoint_signature(
        settings.AUDIT_HMAC_KEY.encode(), lines[0]
    )
    assert Checkpoint.objects.count() == 2 and later.seq == 3
    report, error = verify()
    assert error is None and report["checkpoints_checked"] == 4


@pytest.mark.django_db
def test_verify_since_the_latest_checkpoint_walks_only_what_came_after(settings, tmp_path):
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.ndjson")
    write_events(3)
    services.checkpoint(actor=system_actor())
    write_events(2)

    report, error = verify("--since-checkpoint", "latest")

    assert error is None
    assert (report["since_checkpoint"], report["checked"], report["last_seq"]) == (3, 2, 5)


@pytest.mark.django_db
def test_a_forged_checkpoint_is_refused(tmp_path):
    write_events(2)
    forged = tmp_path / "forged.ndjson"
    head = ChainHead.objects.get()
    forged.write_text(
        json.dumps({"seq": 2, "hash": head.hash, "timestamp": "x", "signature": "0" * 64}) + "\n"
    )

    report, error = verify("--checkpoints", str(forged))

    assert error is not None
    assert "bad signature" in report["broken"]["problem"]
    with pytest.raises(InvalidInput, match="no validly signed checkpoint"):
        verify("--checkpoints", str(forged), "--since-checkpoint", "2")


def test_checkpoint_command_and_task_publish_only_when_the_chain_grew(db):
    write_events(1)
    out = StringIO()

    call_command("audit_checkpoint", stdout=out)
    unchanged = tasks.checkpoint()
    write_events(1)
    grown = tasks.checkpoint()

    assert json.loads(out.getvalue())["published"] is True
    assert (unchanged, grown) == (None, 2)
    assert list(Checkpoint.objects.values_list("seq", flat=True)) == [2, 1]


# --- Exports -------------------------------------------------------------------------------


def export(*args):
    out = StringIO()
    call_command("audit_export", *args, stdout=out)
    return out.getvalue()


def verify_offline(path, settings, *args):
    """audit/chain.py under a bare interpreter (no site-packages, so no Django)."""
    return subprocess.run(
        [sys.executable, "-S", "-I", str(PROJECT / "audit" / "chain.py"), str(path), *args],
        env={"AUDIT_HMAC_KEY": settings.AUDIT_HMAC_KEY},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.django_db
def test_an_ndjson_export_verifies_offline_without_django(settings, tmp_path):
    write_events(5, actor=Actor(source=Source.CLI, user=baker.make("auth.User"), label="ünï"))
    path = tmp_path / "audit.ndjson"
    call_command("audit_export", "--output", str(path), stdout=StringIO())
    lines = [json.loads(line) for line in path.read_text().splitlines()]

    result = verify_offline(path, settings)

    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5]
    assert lines[1]["prev_hash"] == lines[0]["hash"]
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True, "checked": 5, "last_seq": 5}
    assert verify("--file", str(path))[1] is None


@pytest.mark.django_db
def test_an_altered_export_fails_offline_verification(settings, tmp_path):
    write_events(3)
    lines = export().splitlines()
    altered = json.loads(lines[1])
    altered["actor_label"] = "someone else"
    path = tmp_path / "audit.ndjson"
    path.write_text("\n".join([lines[0], json.dumps(altered), lines[2]]) + "\n")

    result = verify_offline(path, settings)

    assert result.returncode == 1
    assert json.loads(result.stdout)["broken"]["seq"] == 2
    assert verify("--file", str(path))[1] is not None


@pytest.mark.django_db
def test_an_export_between_two_moments_is_an_unbroken_run_of_the_chain(settings, tmp_path):
    events = write_events(6)
    since, until = chain_timestamp(events[1]), chain_timestamp(events[4])

    lines = [json.loads(line) for line in export("--since", since, "--until", until).splitlines()]

    assert [line["seq"] for line in lines] == [2, 3, 4]
    path = tmp_path / "part.ndjson"
    path.write_text(export("--since", since, "--until", until))
    assert verify_offline(path, settings).returncode == 0


@pytest.mark.django_db
def test_a_csv_export_has_a_header_and_one_row_per_event():
    write_events(2)

    rows = export("--format", "csv").splitlines()

    assert rows[0].split(",")[:3] == ["seq", "timestamp", "actor_id"]
    assert len(rows) == 3


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args",
    [("--since", "yesterday"), ("--since", "2026-12-02", "--until", "2026-12-01")],
    ids=["not-a-date", "until-before-since"],
)
def test_export_refuses_bad_moments(args):
    with pytest.raises(InvalidInput):
        export(*args)
