"""What the runner cluster's workers run (queue ``AUTOMATION_QUEUE``, never the delivery queue)."""

from . import runner, services


def run_next() -> str:
    """Run the jobs that may run, one after the other; queued once per approval, resume and
    sweep."""
    job = runner.run_next()
    return f"ran job {job.pk}" if job is not None else "no job may run now"


def sweep() -> str:
    """Resume jobs whose worker died, then look for a job to run (scheduled every minute)."""
    resumed = services.resume_stalled()
    services.queue_waiting()
    return f"resumed {len(resumed)} job(s)"
