from django.apps import AppConfig


class CallbacksConfig(AppConfig):
    name = "callbacks"
    verbose_name = "Decision callbacks"

    def ready(self) -> None:
        from automation.events import JobEnded
        from claims import events, selectors

        from . import outbox

        # Every settled request is asked for its callback URL: read it with the request.
        selectors.read_with_approvals("callback_target")
        # A request's callback URL hears of the decision, whoever or whatever took it.
        for settled in (events.ApprovalDecided, events.ApprovalExpired, events.ApprovalDefaulted):
            events.subscribe(settled, outbox.approval_settled)
        # A job's callback URL hears how it ended, whatever ended it.
        events.subscribe(JobEnded, outbox.job_ended)
