"""A real browser (Debian's chromium, driven by Playwright) against the live test server."""

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.db import connections

from tests.telegram.conftest import fake_telegram, qcluster  # noqa: F401 (fixtures used here)

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser_page(monkeypatch):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # around it are still synchronous. Playwright gives the browser a fresh temporary profile.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()
            # Django keeps connections per context, and the ORM calls made while Playwright runs
            # get their own; pytest-django closes only the others before it drops the test
            # database ("being accessed by other users"), so these are closed here.
            connections.close_all()


PASSWORD = "a-browser-test-password"  # pragma: allowlist secret
# pytest-django's admin_user fixture has this password.
ADMIN_PASSWORD = "password"  # pragma: allowlist secret


@pytest.fixture
def staff_approver(transactional_db):
    user = User.objects.create_user("pat", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Approvers"))
    return user


def log_in(page, live_server, user, *, password=PASSWORD, next_path="/admin/"):
    page.goto(f"{live_server.url}/admin/login/?next={next_path}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
