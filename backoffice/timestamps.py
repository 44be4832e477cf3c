"""The one timestamp format Claimdesk writes: ISO 8601 in UTC with a ``Z``, to the microsecond.

The API (DRF's ``DATETIME_FORMAT``), the CLI's JSON, error messages and audit details all use it,
so a timestamp copied from one can be compared with another as a string.
"""

from datetime import UTC, datetime

# The same format for DRF, which renders in the current time zone (TIME_ZONE is UTC).
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso_utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # The same text as strftime(DATETIME_FORMAT), a few times faster: an answer formats a dozen.
    return moment.astimezone(UTC).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"
