"""deploy/purge-secrets, the history rewrite of the token-leak runbook."""

import subprocess

import pytest

from .conftest import fake_bot_token


@pytest.fixture
def leaky_origin(tmp_path, git):
    """A bare "origin" whose history leaked a bot token in an old commit, removed later.

    main:    Add app -> Configure the bot (token) -> Add readme (tag v1) -> Read the token from
             the environment (token gone)
    feature: branches off "Configure the bot", so the token is still in its tip.
    """
    token = fake_bot_token()
    work = tmp_path / "work"
    work.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=work)

    def commit(message, **files):
        for name, text in files.items():
            (work / name).write_text(text)
        git("add", ".", cwd=work)
        git("commit", "--quiet", "-m", message, cwd=work)

    commit("Add app", **{"app.py": 'print("claims")\n'})
    commit("Configure the bot", **{"bot.py": f'TOKEN = "{token}"\nCHAT = -1001\n'})
    git("branch", "feature", cwd=work)
    commit("Add readme", **{"README.txt": "Claimdesk\n"})
    git("tag", "-a", "v1", "-m", "First release", cwd=work)
    commit(
        "Read the token from the environment",
        **{"bot.py": 'import os\nTOKEN = os.environ["BOT_TOKEN"]\nCHAT = -1001\n'},
    )
    git("checkout", "--quiet", "feature", cwd=work)
    commit("Feature work", **{"feature.py": "ENABLED = True\n"})

    origin = tmp_path / "origin.git"
    git("init", "--quiet", "--bare", str(origin), cwd=tmp_path)
    git("push", "--quiet", str(origin), "main", "feature", "v1", cwd=work)
    secrets_file = tmp_path / "secrets.txt"
    secrets_file.write_text(f"{token}==>REMOVED-BOT-TOKEN\n")
    return origin, token, secrets_file


def history(git, repository):
    """Every commit of every ref, oldest first: subject, and each file's content by path."""
    commits = git("rev-list", "--all", "--topo-order", "--reverse", cwd=repository).split()
    result = []
    for commit in commits:
        subject = git("log", "-1", "--format=%s", commit, cwd=repository).strip()
        files = {
            name: git("show", f"{commit}:{name}", cwd=repository)
            for name in git("ls-tree", "-r", "--name-only", commit, cwd=repository).split()
        }
        result.append((subject, files))
    return result


def refs(git, repository):
    return git("for-each-ref", "--format=%(objectname) %(refname)", cwd=repository)


def grep_all_revisions(git, repository, text):
    revisions = git("rev-list", "--all", cwd=repository).split()
    try:
        return git("grep", "-F", "-l", text, *revisions, cwd=repository)
    except subprocess.CalledProcessError as exc:
        if exc.returncode == 1:  # git grep: nothing found
            return ""
        raise


def test_dry_run_reports_the_affected_commits_and_files_and_changes_nothing(
    leaky_origin, git, run_script
):
    origin, token, secrets_file = leaky_origin
    refs_before = refs(git, origin)

    result = run_script("purge-secrets", secrets_file, origin)

    assert result.returncode == 0, result.stderr
    assert "Commits whose content changes: 3 of 5" in result.stdout
    for subject in ("Configure the bot", "Add readme", "Feature work"):
        assert f"  {subject}\n      bot.py\n" in result.stdout
    assert "Read the token from the environment" not in result.stdout
    assert "refs/heads/feature" in result.stdout
    assert "refs/tags/v1" in result.stdout
    assert "Dry run: nothing was changed" in result.stdout
    assert token not in result.stdout + result.stderr
    assert refs(git, origin) == refs_before
    assert grep_all_revisions(git, origin, token)


def test_rewrite_and_push_remove_the_token_from_every_ref_and_keep_the_rest(
    leaky_origin, git, run_script, tmp_path
):
    origin, token, secrets_file = leaky_origin
    history_before = history(git, origin)
    mirror = tmp_path / "purged.git"

    result = run_script(
        "purge-secrets", secrets_file, origin, "--rewrite", "--push", "--mirror", mirror
    )

    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    assert grep_all_revisions(git, origin, token) == ""
    assert token not in git("log", "--all", "-p", cwd=origin)
    assert token not in git("log", "--all", "-p", cwd=mirror)
    history_after = history(git, origin)
    assert [subject for subject, _ in history_after] == [subject for subject, _ in history_before]
    for (_, files_before), (_, files_after) in zip(history_before, history_after, strict=True):
        assert files_after.keys() == files_before.keys()
        for name, text in files_before.items():
            assert files_after[name] == text.replace(token, "REMOVED-BOT-TOKEN")
    assert git("tag", "-l", cwd=origin).split() == ["v1"]
    assert git("cat-file", "-p", "v1", cwd=origin).endswith("First release\n")


def test_rewrite_without_push_leaves_the_origin_alone(leaky_origin, git, run_script, tmp_path):
    origin, token, secrets_file = leaky_origin
    refs_before = refs(git, origin)
    mirror = tmp_path / "purged.git"

    result = run_script("purge-secrets", secrets_file, origin, "--rewrite", "--mirror", mirror)

    assert result.returncode == 0, result.stderr
    assert f"Rewritten mirror: {mirror}" in result.stdout
    assert refs(git, origin) == refs_before
    assert grep_all_revisions(git, mirror, token) == ""


def test_secrets_absent_from_the_history_leave_nothing_to_purge(leaky_origin, run_script, tmp_path):
    origin, _, _ = leaky_origin
    other = tmp_path / "other.txt"
    other.write_text("never-committed-value-1234\n")

    result = run_script("purge-secrets", other, origin)

    assert result.returncode == 0, result.stderr
    assert "nothing to purge" in result.stdout


@pytest.mark.parametrize(
    ("content", "arguments", "message"),
    [
        (None, [], "cannot read"),
        ("\n\n", [], "holds no expression"),
        ("abc\n", [], "line 1: shorter than"),
        ("regex:([\n", [], "line 1: not a valid regular expression"),
        ("long-enough-secret\n", ["--push"], "--push needs --rewrite"),
        ("long-enough-secret\n", ["--mirror", "somewhere"], "--mirror needs --rewrite"),
    ],
)
def test_usage_errors_exit_2_without_echoing_the_secrets(
    leaky_origin, run_script, tmp_path, content, arguments, message
):
    origin, _, _ = leaky_origin
    secrets_file = tmp_path / "input.txt"
    if content is not None:
        secrets_file.write_text(content)

    result = run_script("purge-secrets", secrets_file, origin, *arguments)

    assert result.returncode == 2
    assert message in result.stderr
    if content and content.strip():
        assert content.strip() not in result.stderr


def test_an_unreachable_repository_fails_with_git_s_reason(run_script, tmp_path):
    secrets_file = tmp_path / "input.txt"
    secrets_file.write_text("long-enough-secret\n")

    result = run_script("purge-secrets", secrets_file, tmp_path / "missing.git")

    assert result.returncode == 1
    assert "git clone failed" in result.stderr
