"""The automation runner's own errors; each channel shows them as the shared error it extends."""

from backoffice.errors import NotPermitted


class CommandNotAllowed(NotPermitted):
    """A step names an executable that ``AUTOMATION_COMMAND_ALLOWLIST`` does not list."""

    code = "command_not_allowed"

    def __init__(self, steps: dict[str, str]) -> None:
        super().__init__("; ".join(f"{where}: {why}" for where, why in steps.items()), steps=steps)
