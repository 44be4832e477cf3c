"""deploy/check-secrets, the CI gate that keeps new secrets out of the repository."""

import shutil

from .conftest import PROJECT, fake_bot_token


def make_repository(tmp_path, git):
    repository = tmp_path / "repository"
    repository.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=repository)
    shutil.copy(PROJECT / ".secrets.baseline", repository / ".secrets.baseline")
    (repository / "app.py").write_text('GREETING = "hello"\n')
    git("add", ".", cwd=repository)
    git("commit", "--quiet", "-m", "Initial commit", cwd=repository)
    return repository


def test_gate_fails_on_a_planted_bot_token_and_passes_once_it_is_removed(tmp_path, git, run_script):
    repository = make_repository(tmp_path, git)
    token = fake_bot_token()
    planted = repository / "notes.txt"
    planted.write_text(f"Bot setup\ntoken {token}\n")

    failed = run_script("check-secrets", repository)

    assert failed.returncode == 1
    assert "notes.txt:2: Telegram Bot Token" in failed.stderr
    assert token not in failed.stdout + failed.stderr

    planted.unlink()
    passed = run_script("check-secrets", repository)

    assert passed.returncode == 0, passed.stderr
    assert "no new secrets" in passed.stdout


def test_gate_scans_tracked_files_too(tmp_path, git, run_script):
    repository = make_repository(tmp_path, git)
    (repository / "settings.py").write_text(f'BOT_TOKEN = "{fake_bot_token()}"\n')
    git("add", "settings.py", cwd=repository)
    git("commit", "--quiet", "-m", "Configure the bot", cwd=repository)

    result = run_script("check-secrets", repository)

    assert result.returncode == 1
    assert "settings.py:1:" in result.stderr


def test_gate_ignores_git_ignored_files(tmp_path, git, run_script):
    repository = make_repository(tmp_path, git)
    (repository / ".gitignore").write_text(".env\n")
    (repository / ".env").write_text(f"TELEGRAM_BOT_TOKEN={fake_bot_token()}\n")

    result = run_script("check-secrets", repository)

    assert result.returncode == 0, result.stderr


def test_gate_accepts_a_fake_token_marked_as_allowed(tmp_path, git, run_script):
    repository = make_repository(tmp_path, git)
    (repository / "fixtures.py").write_text(
        f'TOKEN = "{fake_bot_token()}"  # pragma: allowlist secret\n'
    )

    result = run_script("check-secrets", repository)

    assert result.returncode == 0, result.stderr


def test_gate_without_a_baseline_is_a_usage_error(tmp_path, git, run_script):
    repository = make_repository(tmp_path, git)
    (repository / ".secrets.baseline").unlink()

    result = run_script("check-secrets", repository)

    assert result.returncode == 2
    assert "no .secrets.baseline" in result.stderr


def test_gate_outside_a_git_repository_is_a_usage_error(tmp_path, run_script):
    directory = tmp_path / "plain"
    directory.mkdir()
    shutil.copy(PROJECT / ".secrets.baseline", directory / ".secrets.baseline")

    result = run_script("check-secrets", directory)

    assert result.returncode == 2
    assert "not the top directory of a git repository" in result.stderr
