"""With DEBUG off, as in production, gunicorn serves the admin's styles and the API docs' scripts
(WhiteNoise, from what collectstatic gathered, under hashed names)."""

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.telegram.worker import wait_for

from .test_run import free_port

PROJECT = Path(__file__).resolve().parents[2]


def get(url, **headers):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, b""
    except OSError:
        return None, {}, b""


@pytest.fixture(scope="module")
def production_web(tmp_path_factory):
    """gunicorn with DEBUG off, after migrate and collectstatic as in the recipe."""
    home = tmp_path_factory.mktemp("web")
    env = {
        **os.environ,
        "DEBUG": "0",
        "STATIC_ROOT": str(home / "static"),
        "VAR_DIR": str(home),
        "DATABASE_URL": f"sqlite:///{home / 'web.sqlite3'}",
    }
    for command in ("migrate", "collectstatic"):
        subprocess.run(
            [sys.executable, "manage.py", command, "--noinput", "-v", "0"],
            cwd=PROJECT,
            env=env,
            check=True,
            timeout=300,
        )
    port = free_port()
    with (home / "gunicorn.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "backoffice.wsgi", "-b", f"127.0.0.1:{port}"],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: get(f"{base}/admin/login/")[0] == 200 or server.poll() is not None,
            timeout=60,
            message="gunicorn to answer",
        )
        assert server.poll() is None, (home / "gunicorn.log").read_text()
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def assets(html, pattern):
    return re.findall(pattern, html.decode())


def test_the_admin_is_styled_with_debug_off(production_web):
    status, _, page = get(f"{production_web}/admin/login/")
    [stylesheet, *_] = assets(page, r'href="(/static/admin/css/[^"]+\.css)"')

    assert status == 200
    assert re.search(r"\.[0-9a-f]{12}\.css$", stylesheet), "static names are hashed"
    status, headers, _ = get(f"{production_web}{stylesheet}", **{"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert headers["Content-Encoding"] == "gzip"
    assert "immutable" in headers["Cache-Control"]


def test_the_swagger_ui_loads_its_scripts_with_debug_off(production_web):
    status, _, page = get(f"{production_web}/api/docs/")
    scripts = assets(page, r'<script src="(/static/[^"]+\.js)"')

    assert status == 200
    assert scripts
    for script in scripts:
        assert get(f"{production_web}{script}")[0] == 200, script
