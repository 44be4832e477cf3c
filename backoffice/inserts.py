"""Insert a row once: one statement where ``get_or_create`` takes four.

``get_or_create`` reads first, then inserts inside a savepoint so that a concurrent insert of the
same key can be caught (SELECT, SAVEPOINT, INSERT, RELEASE). Queues written on every state change
(the outbox, the callbacks) insert far more often than they find a row, on paths held to a query
budget, so they use ``INSERT … ON CONFLICT DO NOTHING RETURNING``: PostgreSQL and SQLite (3.35
and later) insert the row or, if its unique key is taken, by anyone, do nothing, without an error
that would need a savepoint to recover from.
"""

from typing import Any

from django.db import models, router, transaction

# Only the model's own names, quoted, are formatted in; the values are parameters.
INSERT_ONCE = (
    "INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
    "ON CONFLICT ({key}) DO NOTHING RETURNING {pk}"
)


def insert_once(instance: models.Model, *, unique_field: str) -> bool:
    """INSERT ``instance`` unless a row with the same ``unique_field`` value exists.

    True when it was inserted: its primary key is set and it is saved, as after ``save()``.
    False when the key was taken; ``instance`` is left unsaved and the caller reads the row that
    holds the key, if it needs it. The primary key must be one the database assigns.
    """
    meta = instance._meta
    using = router.db_for_write(type(instance), instance=instance)
    connection = transaction.get_connection(using)
    quote = connection.ops.quote_name
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    values: list[Any] = [
        field.get_db_prep_save(field.pre_save(instance, add=True), connection) for field in fields
    ]
    statement = INSERT_ONCE.format(
        table=quote(meta.db_table),
        columns=", ".join(quote(field.column) for field in fields),
        placeholders=", ".join(["%s"] * len(fields)),
        key=quote(next(field.column for field in fields if field.name == unique_field)),
        pk=quote(meta.pk.column),
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, values)
        row = cursor.fetchone()
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = using
    return True
