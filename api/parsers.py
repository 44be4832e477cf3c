"""Reading request bodies."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


def _storable(value):
    """Whether every string in ``value`` (keys included) can go into a database text column."""
    if isinstance(value, str):
        return "\x00" not in value and not any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return all(_storable(key) and _storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing with 400 what parses but could never be stored.

    JSON may spell NUL characters and lone surrogates (``\\u0000``, ``\\ud800``), which
    PostgreSQL rejects, and may nest deeper than Python's stack; both are the client's error.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None
        try:
            storable = _storable(data)
        except RecursionError:
            storable = False
        if not storable:
            raise ParseError(
                "JSON parse error - NUL characters and lone surrogates are not allowed."
            )
        return data
