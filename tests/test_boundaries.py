"""The domain knows no channel: claims/, audit/ and automation/ import neither the Telegram
bridge nor the API.

Channels hear of changes through ``claims.events``; an import the other way round would tie the
domain to whoever happens to listen today. Imports are read with ``ast``, so one hidden inside a
function counts too.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = ["claims", "audit", "automation"]
CHANNELS = ["telegram_bridge", "api", "monitoring"]


def imported_modules(path, root=ROOT):
    """Every module ``path`` imports, relative imports resolved against its package."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def is_channel(module):
    return any(module == channel or module.startswith(f"{channel}.") for channel in CHANNELS)


@pytest.mark.parametrize("app", DOMAIN)
def test_domain_app_imports_no_channel(app):
    offending = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / app).rglob("*.py"))
        for module in imported_modules(path)
        if is_channel(module)
    ]

    assert offending == []


@pytest.mark.parametrize(
    "source",
    [
        "import telegram_bridge.outbox\n",
        "def later():\n    from api import views\n",
        "from telegram_bridge.outbox import enqueue\n",
    ],
)
def test_the_check_sees_every_way_of_importing_a_channel(tmp_path, source):
    probe = tmp_path / "claims" / "management" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(source)

    assert any(is_channel(module) for module in imported_modules(probe, tmp_path))


def test_the_client_library_needs_only_requests_urllib3_and_the_standard_library():
    """``clients/python`` installs on an agent's machine without Django or the server's code."""
    package = ROOT / "clients" / "python" / "claimdesk_client"
    allowed = {"claimdesk_client", "requests", "urllib3", *sys.stdlib_module_names}
    offending = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted(package.rglob("*.py"))
        for module in imported_modules(path, package.parent)
        if module.split(".")[0] not in allowed
    ]

    assert offending == []
