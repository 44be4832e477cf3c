"""How Claimdesk looks up what a user may do: Django's ``ModelBackend``, in one query."""

import functools

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router


class OneQueryModelBackend(ModelBackend):
    """``ModelBackend`` that loads a user's own and group permissions in a single query.

    Every decision taken through the API checks a permission (``claims.services``), and Django
    would spend two queries on it, one for the user's permissions and one for the groups', plus
    more time building them in the ORM than PostgreSQL takes to answer. The answer is exactly
    Django's: the same superuser and inactive-user rules, and the same caches on the user object
    (``_user_perm_cache``, ``_group_perm_cache``, ``_perm_cache``), so ``get_user_permissions()``
    and ``get_group_permissions()`` afterwards cost nothing either.
    """

    def get_all_permissions(self, user_obj, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            self._load_permission_caches(user_obj)
        return super().get_all_permissions(user_obj)

    def _load_permission_caches(self, user_obj):
        """Fill both of Django's caches at once; a cache already there is left to Django."""
        if hasattr(user_obj, "_user_perm_cache") or hasattr(user_obj, "_group_perm_cache"):
            return
        if user_obj.is_superuser:
            # Django gives a superuser every permission, both as their own and as a group's.
            every = Permission.objects.values_list("content_type__app_label", "codename").order_by()
            user_obj._user_perm_cache = {f"{app}.{codename}" for app, codename in every}
            user_obj._group_perm_cache = set(user_obj._user_perm_cache)
            return
        found = {"user": set(), "group": set()}
        connection = connections[router.db_for_read(Permission)]
        with connection.cursor() as cursor:
            cursor.execute(_permissions_sql(connection.ops.quote_name), [user_obj.pk, user_obj.pk])
            for source, app, codename in cursor.fetchall():
                found[source].add(f"{app}.{codename}")
        user_obj._user_perm_cache = found["user"]
        user_obj._group_perm_cache = found["group"]


@functools.cache
def _permissions_sql(quote):
    """``(source, app_label, codename)`` of a user's own ("user") and group ("group") permissions.

    Written out rather than built by the ORM on each call: this runs on every API decision, and
    composing the UNION through querysets costs more CPU than the query itself. Table and column
    names come from the models, so the statement follows them.
    """
    user_model = get_user_model()
    own = user_model._meta.get_field("user_permissions").remote_field.through._meta
    membership = user_model._meta.get_field("groups").remote_field.through._meta
    granted = Group._meta.get_field("permissions").remote_field.through._meta

    def column(meta, field):
        return f"{quote(meta.db_table)}.{quote(meta.get_field(field).column)}"

    permission, content_type = Permission._meta, ContentType._meta
    label = (
        f"{column(content_type, 'app_label')}, {column(permission, 'codename')} "
        f"FROM {quote(permission.db_table)} INNER JOIN {quote(content_type.db_table)} "
        f"ON {column(permission, 'content_type')} = {column(content_type, 'id')}"
    )
    return (
        f"SELECT 'user', {label} "
        f"INNER JOIN {quote(own.db_table)} "
        f"ON {column(own, 'permission')} = {column(permission, 'id')} "
        f"WHERE {column(own, 'user')} = %s "
        f"UNION ALL "
        f"SELECT 'group', {label} "
        f"INNER JOIN {quote(granted.db_table)} "
        f"ON {column(granted, 'permission')} = {column(permission, 'id')} "
        f"INNER JOIN {quote(membership.db_table)} "
        f"ON {column(membership, 'group')} = {column(granted, 'group')} "
        f"WHERE {column(membership, 'user')} = %s"
    )
