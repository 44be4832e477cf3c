"""Throwaway git repositories for the secrets gate and the purge playbook.

Git runs with a fixed identity and no user or system configuration, so the tests behave the same
on any machine and never touch the developer's home directory.
"""

import os
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


def fake_bot_token():
    """A realistic Telegram bot token, assembled at run time so no file in the project holds one."""
    return "7" * 9 + ":" + "".join(["AAHq3x", "Z9vLm2", "Rt8Kp4", "Wn6Yb1", "Cd5Fg7", "Jh0Sa"])


@pytest.fixture
def git_env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GIT_") and key not in {"HOME", "XDG_CONFIG_HOME"}
    }
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.invalid",
        GIT_COMMITTER_NAME="Test Committer",
        GIT_COMMITTER_EMAIL="committer@example.invalid",
        GIT_TERMINAL_PROMPT="0",
        # Temporary directories may sit inside the project's own checkout; never reach it.
        GIT_CEILING_DIRECTORIES=str(tmp_path),
    )
    return env


@pytest.fixture
def git(git_env):
    """Run git with the test identity; returns its standard output."""

    def run(*args, cwd):
        return subprocess.run(
            ["git", *args], cwd=cwd, env=git_env, capture_output=True, text=True, check=True
        ).stdout

    return run


@pytest.fixture
def run_script(git_env):
    """Run one of the deploy/ scripts; returns the completed process."""

    def run(name, *args, cwd=None):
        return subprocess.run(
            [str(PROJECT / "deploy" / name), *map(str, args)],
            cwd=cwd,
            env=git_env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    return run
