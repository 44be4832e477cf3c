"""Length limits, read from the model fields that store the values.

A limit is declared once, on the field; services, API serializers and forms all check against
``max_length(Model, "field")`` so they can never disagree.
"""

from django.db import models


def max_length(model: type[models.Model], field: str) -> int:
    """The longest value ``model.field`` takes."""
    limit = model._meta.get_field(field).max_length  # type: ignore[union-attr]
    assert limit is not None, f"{model.__name__}.{field} has no max_length"
    return limit
