"""How lists are cut into pages."""

from django.utils.dateparse import parse_datetime
from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError

MAX_PAGE_SIZE = 500
# Past any real table; keeps an absurd ?offset= from overflowing the database's integer.
MAX_OFFSET = 2**31 - 1


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """``?limit=&offset=`` for claims, approval requests and outbox messages."""

    max_limit = MAX_PAGE_SIZE

    def get_limit(self, request):
        _whole_number(request, self.limit_query_param)
        return super().get_limit(request)

    def get_offset(self, request):
        _whole_number(request, self.offset_query_param)
        return min(super().get_offset(request), MAX_OFFSET)


def _whole_number(request, name):
    """Refuse ``?name=`` that is empty, null or not a whole number, as the schema says.

    DRF quietly falls back to its default for such values; a client that sent one meant
    something else, and schema-driven clients expect the 400 the schema promises.
    """
    value = request.query_params.get(name)
    if value is not None and not value.isdigit():
        raise ValidationError({name: ["must be a whole number, 0 or more"]})


class AuditCursorPagination(pagination.CursorPagination):
    """The audit trail, oldest first, by opaque cursor.

    Events are only ever appended with a later timestamp, so a cursor on (timestamp, id) neither
    repeats nor skips an event a client has already paged past while new ones arrive.
    """

    ordering = ("timestamp", "id")
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def decode_cursor(self, request):
        """A cursor whose position is not a timestamp is as unknown as one that cannot decode."""
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            try:
                valid = parse_datetime(str(cursor.position)) is not None
            except ValueError:
                valid = False
            if not valid:
                raise NotFound(self.invalid_cursor_message)
        return cursor
