"""Drills of the Telegram side: an outage, a 429 storm, dead letters growing, a leaked token."""

from django.contrib.auth import get_user_model

from backoffice.actors import Actor, Source
from telegram_bridge import dead_letters, delivery, outbox

from .base import DrillRun, Status, drill

MESSAGES = 5


def drain_until(run: DrillRun, what: str, condition) -> None:
    """Deliver due messages, as the scheduled sweep does, until ``condition`` holds."""

    def drained():
        delivery.drain(seconds=2)
        return condition()

    run.wait_for(what, drained)


def staff_actor(run: DrillRun) -> Actor:
    """An on-call engineer allowed to requeue, as the runbooks' admin steps need."""
    user, _ = get_user_model().objects.get_or_create(
        username=f"drill-oncall-{run.run_id}", defaults={"is_staff": True, "is_superuser": True}
    )
    return Actor(source=Source.CLI, user=user)


@drill(
    "telegram-outage",
    "docs/runbooks/telegram-outage.md",
    "Telegram answers 502 to every send until its messages die; once it is back, the dead "
    "letters are requeued and all go out once.",
)
def telegram_outage(run: DrillRun) -> None:
    from django.conf import settings

    run.fake.control.inject("sendMessage", 502, count=10_000)
    messages = run.enqueue(MESSAGES, "outage")
    run.step(f"Telegram down (502); {MESSAGES} approval messages queued")
    drain_until(
        run,
        "the messages to die",
        run.all_are(messages, Status.DEAD),
    )
    run.step(f"all died after OUTBOX_MAX_ATTEMPTS={settings.OUTBOX_MAX_ATTEMPTS} tries each")
    run.fake.control.reset()
    run.step("Telegram back; runbook: requeue the dead letters (outbox requeue --all-dead)")
    report = dead_letters.requeue_many([m.pk for m in messages], actor=staff_actor(run))
    run.check(len(report.requeued) == MESSAGES, f"requeue: {report}")
    drain_until(
        run,
        "the requeued messages to go out",
        run.all_are(messages, Status.SENT),
    )
    run.check_all_sent_once(messages)


@drill(
    "rate-limit-storm",
    "docs/runbooks/rate-limit-storm.md",
    "Telegram answers 429 with retry_after to a burst; the outbox pauses and retries, no message "
    "dies and none is sent twice.",
)
def rate_limit_storm(run: DrillRun) -> None:
    run.fake.control.inject("sendMessage", 429, count=MESSAGES, retry_after=1)
    messages = run.enqueue(MESSAGES, "storm")
    run.step(f"Telegram answers 429 (retry_after 1 s) to the next {MESSAGES} sends")
    drain_until(run, "the storm to pass", run.all_are(messages, Status.SENT))
    run.step("runbook: nothing to do by hand; the outbox waited out every retry_after")
    run.check_all_sent_once(messages)


@drill(
    "dead-letters",
    "docs/runbooks/dead-letters.md",
    "A chat blocks the bot (403): its messages die at once; the cause is found from the dead "
    "letters' status code, fixed, and the messages requeued.",
)
def dead_letters_pile_up(run: DrillRun) -> None:
    messages = run.enqueue(MESSAGES, "blocked")
    for message in messages:
        run.fake.control.block_chat(message.chat_id)
    run.step(f"{MESSAGES} chats blocked the bot")
    drain_until(run, "the dead letters", run.all_are(messages, Status.DEAD))
    codes = set(
        outbox.messages()
        .filter(pk__in=[m.pk for m in messages])
        .values_list("last_status_code", flat=True)
    )
    run.check(codes == {403}, f"dead letters carry {codes}, not 403")
    candidates = set(dead_letters.requeue_candidates().values_list("pk", flat=True))
    run.check(
        not candidates & {m.pk for m in messages},
        "the automatic requeue would retry a refusal",
    )
    run.step("runbook: dead letters list 403 'bot was blocked'; auto requeue leaves them alone")
    run.fake.control.reset()
    report = dead_letters.requeue_many([m.pk for m in messages], actor=staff_actor(run))
    run.check(len(report.requeued) == MESSAGES, f"requeue: {report}")
    run.step("chats unblocked the bot; the dead letters requeued")
    drain_until(run, "the requeued messages", run.all_are(messages, Status.SENT))
    run.check_all_sent_once(messages)


@drill(
    "token-leak",
    "docs/runbooks/token-leak.md",
    "The bot token is revoked (401 for the old one); messages die, the new token is set, they are "
    "requeued and go out; the old token appears in no stored error.",
)
def token_leak(run: DrillRun) -> None:
    from django.test.utils import override_settings

    from backoffice.redaction import REDACTED

    leaked = run.fake.token
    new_token = f"{leaked.split(':')[0]}:{'N' * 35}"
    run.fake.state.token = new_token
    messages = run.enqueue(MESSAGES, "revoked")
    run.step("BotFather revoked the leaked token; the workers still hold it")
    drain_until(run, "the refusals", run.all_are(messages, Status.DEAD))
    errors = list(
        outbox.messages()
        .filter(pk__in=[m.pk for m in messages])
        .values_list("last_error", flat=True)
    )
    run.check(all(leaked not in error for error in errors), "a stored error holds the token")
    run.check(all(REDACTED in error or "Unauthorized" in error for error in errors), errors[0])
    with override_settings(TELEGRAM_BOT_TOKEN=new_token):
        run.step(
            "runbook: TELEGRAM_BOT_TOKEN set to the new token everywhere; dead letters requeued"
        )
        dead_letters.requeue_many([m.pk for m in messages], actor=staff_actor(run))
        drain_until(run, "the requeued messages", run.all_are(messages, Status.SENT))
    run.check_all_sent_once(messages)
