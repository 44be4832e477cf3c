"""The settings mypy's Django plugin loads: the real ones, in development mode.

The plugin imports the settings to learn the installed apps and models; with ``DEBUG`` off they
refuse to load without production secrets, which a type check neither has nor needs.
"""

import os

os.environ.setdefault("DEBUG", "1")

from backoffice.settings import *  # noqa: F403
