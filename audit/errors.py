"""The errors only the audit trail raises; the shared ones are in ``backoffice.errors``."""

from typing import Any

from backoffice.errors import DomainError


class ChainBroken(DomainError):
    """The hash chain does not hold: an event was changed, removed or inserted behind the
    application's back, or a published checkpoint contradicts it. Commands exit with 1."""

    code = "audit_chain_broken"

    def __init__(self, report: dict[str, Any]) -> None:
        broken = report["broken"]
        where = f"sequence {broken['seq']}"
        if broken.get("timestamp"):
            where += f" ({broken['timestamp']})"
        super().__init__(f"the audit chain is broken at {where}: {broken['problem']}", **report)
