"""backoffice.auth.OneQueryModelBackend answers exactly as Django's ModelBackend, in one query."""

import pytest
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from model_bakery import baker

from backoffice.auth import OneQueryModelBackend

pytestmark = pytest.mark.django_db


def permission(label):
    app_label, codename = label.split(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


@pytest.fixture
def user():
    """A user with one permission of their own and two through a group (one shared)."""
    user = baker.make(User, username="mixed", is_active=True)
    user.user_permissions.add(permission("claims.view_claim"))
    group = baker.make(Group, name="Readers")
    group.permissions.add(permission("claims.view_claim"), permission("audit.view_auditevent"))
    user.groups.add(group)
    return user


def fresh(user):
    """The same user without the permission caches a previous check left on the object."""
    return User.objects.get(pk=user.pk)


def answers(backend, user):
    user = fresh(user)
    return (
        backend.get_all_permissions(user),
        backend.get_user_permissions(user),
        backend.get_group_permissions(user),
    )


def test_settings_use_the_one_query_backend(settings):
    assert settings.AUTHENTICATION_BACKENDS == ["backoffice.auth.OneQueryModelBackend"]


def test_own_and_group_permissions_are_those_django_finds(user):
    all_permissions, own, from_groups = answers(OneQueryModelBackend(), user)

    assert own == {"claims.view_claim"}
    assert from_groups == {"claims.view_claim", "audit.view_auditevent"}
    assert all_permissions == {"claims.view_claim", "audit.view_auditevent"}
    assert answers(ModelBackend(), user) == (all_permissions, own, from_groups)


def test_all_permissions_cost_one_query_then_none(user):
    user = fresh(user)
    backend = OneQueryModelBackend()

    with CaptureQueriesContext(connection) as first:
        assert user.has_perm("audit.view_auditevent")
    with CaptureQueriesContext(connection) as again:
        assert user.has_perm("claims.view_claim")
        assert not user.has_perm("claims.decide_approvalrequest")
        assert backend.get_user_permissions(user) == {"claims.view_claim"}
        assert backend.get_group_permissions(user) == {
            "claims.view_claim",
            "audit.view_auditevent",
        }

    assert len(first.captured_queries) == 1
    assert len(again.captured_queries) == 0


def test_caches_are_django_caches(user):
    user = fresh(user)
    user.has_perm("claims.view_claim")

    assert user._user_perm_cache == {"claims.view_claim"}
    assert user._group_perm_cache == {"claims.view_claim", "audit.view_auditevent"}
    assert user._perm_cache == {"claims.view_claim", "audit.view_auditevent"}


def test_a_cache_django_already_filled_is_kept(user):
    user = fresh(user)
    assert ModelBackend().get_user_permissions(user) == {"claims.view_claim"}

    assert OneQueryModelBackend().get_all_permissions(user) == {
        "claims.view_claim",
        "audit.view_auditevent",
    }


def test_user_without_permissions_has_none():
    user = baker.make(User, is_active=True)

    assert OneQueryModelBackend().get_all_permissions(user) == set()
    assert not user.has_perm("claims.view_claim")


def test_inactive_user_has_no_permissions(user):
    user.is_active = False
    user.save()
    user = fresh(user)

    with CaptureQueriesContext(connection) as queries:
        assert OneQueryModelBackend().get_all_permissions(user) == set()
        assert not user.has_perm("claims.view_claim")
    assert len(queries.captured_queries) == 0


def test_superuser_has_every_permission_in_one_query():
    user = fresh(baker.make(User, is_active=True, is_superuser=True))
    every = {
        f"{app}.{codename}"
        for app, codename in Permission.objects.values_list("content_type__app_label", "codename")
    }

    with CaptureQueriesContext(connection) as queries:
        assert OneQueryModelBackend().get_all_permissions(user) == every
    assert len(queries.captured_queries) == 1
    assert user._user_perm_cache == user._group_perm_cache == every
    assert answers(ModelBackend(), user) == (every, every, every)


def test_object_permissions_are_not_granted(user):
    assert OneQueryModelBackend().get_all_permissions(fresh(user), obj=user) == set()
