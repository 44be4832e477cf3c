"""A fake Telegram Bot API over real HTTP, for tests, the demo and CI.

See docs/telegram-fake-server.md.
"""

from .control import ControlError, FakeTelegramControl
from .server import FakeTelegramServer
from .state import FloodLimits

__all__ = ["ControlError", "FakeTelegramControl", "FakeTelegramServer", "FloodLimits"]
