"""Users' permissions kept in the shared cache, so that checking one costs no query.

Django's ``ModelBackend`` reads a user's permissions with two queries (the user's own and their
groups') and keeps the answer on the user object, which lives for one request. The API loads the
user afresh with every token, so every decision paid for both queries again. This backend keeps
the answer in the default cache (Redis, or the database), where every process finds it.

Each answer is stamped with the current *generation*. Whatever can change someone's permissions
(group membership, a group's or a user's permissions, a group or permission deleted, a user
created) starts a new generation, and answers stamped with an older one are ignored from the
next check on, in every process. A generation is a random value rather than a counter, so a
generation lost by the cache and started again can never match an old answer. It is renewed at
once, so the changing transaction sees its own change, and again after commit, so that an answer
read from the database by a concurrent request before the commit cannot outlive it.

Superusers, inactive users and object permissions go straight to ``ModelBackend``: the first two
are decided by flags on the user row, which is read afresh anyway.
"""

import uuid

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

GENERATION_KEY = "auth-permissions:generation"
# A stamped answer is dropped after this long even if nothing changed.
ANSWER_TIMEOUT = 300
# The generation expires too, so a deployment (or a test run) that stops leaves no key behind in
# a shared Redis. It outlives every answer; when it expires, a new one starts and answers stamped
# with the old one are read afresh, as after any change.
GENERATION_TIMEOUT = 24 * 3600


class CachedPermissionBackend(ModelBackend):
    def get_all_permissions(self, user_obj, obj=None):
        if (
            obj is not None
            or not user_obj.is_active
            or user_obj.is_anonymous
            or user_obj.is_superuser
            or hasattr(user_obj, "_perm_cache")
        ):
            return super().get_all_permissions(user_obj, obj)
        key = answer_key(user_obj.pk)
        found = cache.get_many([GENERATION_KEY, key])
        generation = found.get(GENERATION_KEY) or _current_generation()
        stamped = found.get(key)
        if stamped is not None and stamped[0] == generation:
            user_obj._perm_cache = stamped[1]
            return stamped[1]
        # Read after the generation: a change committed meanwhile renews it, so this answer is
        # never taken for a newer one.
        permissions = super().get_all_permissions(user_obj)
        cache.set(key, (generation, permissions), ANSWER_TIMEOUT)
        return permissions


def answer_key(user_id):
    return f"auth-permissions:user:{user_id}"


def _current_generation():
    cache.add(GENERATION_KEY, uuid.uuid4().hex, timeout=GENERATION_TIMEOUT)
    return cache.get(GENERATION_KEY)


def new_generation(using=None):
    """Forget every cached answer, now and again when the current transaction commits."""
    _renew()
    transaction.on_commit(_renew, using=using)


def _renew():
    cache.set(GENERATION_KEY, uuid.uuid4().hex, timeout=GENERATION_TIMEOUT)


User = get_user_model()


@receiver(m2m_changed, sender=User.groups.through)
@receiver(m2m_changed, sender=User.user_permissions.through)
@receiver(m2m_changed, sender=Group.permissions.through)
def memberships_changed(*, action, using, **kwargs):
    if action.startswith("post_"):
        new_generation(using)


@receiver(post_save, sender=User)
def user_saved(*, created, using, **kwargs):
    # A new user may take the id of a deleted one (SQLite reuses them after a rollback).
    if created:
        new_generation(using)


@receiver(post_save, sender=Permission)
@receiver(post_delete, sender=Permission)
@receiver(post_delete, sender=Group)
@receiver(post_delete, sender=User)
def permissions_changed(*, using, **kwargs):
    new_generation(using)
