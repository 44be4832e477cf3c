from io import StringIO

import pytest
from django.core.management import call_command
from django.utils.module_loading import import_string
from django_q.models import Schedule

from backoffice.schedules import SCHEDULES


@pytest.mark.parametrize("entry", SCHEDULES, ids=lambda entry: entry["func"])
def test_every_scheduled_task_is_an_importable_function(entry):
    assert callable(import_string(entry["func"]))


def test_install_schedules_creates_each_schedule_once(db):
    call_command("install_schedules", stdout=StringIO())
    out = StringIO()
    call_command("install_schedules", stdout=out)

    assert Schedule.objects.count() == len(SCHEDULES)
    assert out.getvalue().count("updated:") == len(SCHEDULES)
    sweep = Schedule.objects.get(func="telegram_bridge.tasks.sweep")
    assert (sweep.schedule_type, sweep.minutes, sweep.repeats) == (Schedule.MINUTES, 1, -1)


def test_the_job_sweep_runs_on_the_runner_cluster_only(db, settings):
    call_command("install_schedules", stdout=StringIO())

    jobs = Schedule.objects.get(func="automation.tasks.sweep")
    assert jobs.cluster == settings.AUTOMATION_QUEUE == "claimdesk-test-jobs"
    assert Schedule.objects.get(func="telegram_bridge.tasks.sweep").cluster is None


def test_the_two_heartbeat_schedules_run_half_a_minute_apart(db):
    call_command("install_schedules", stdout=StringIO())

    first, second = Schedule.objects.filter(func="monitoring.tasks.beat").order_by("next_run")

    assert (first.minutes, second.minutes) == (1, 1)
    assert abs((second.next_run - first.next_run).total_seconds() - 30) < 5
