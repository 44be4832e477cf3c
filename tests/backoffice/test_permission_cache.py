"""Permissions come from the shared cache, and any change to them is seen on the next check."""

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.cache import cache
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from model_bakery import baker

from backoffice import permission_cache

DECIDE = "claims.decide_approvalrequest"


def fresh(user):
    """The user as the next request loads it: a new object, with nothing cached on it."""
    return User.objects.get(pk=user.pk)


def permission_queries(check):
    with CaptureQueriesContext(connection) as queries:
        check()
    return [query["sql"] for query in queries if "auth_permission" in query["sql"]]


@pytest.fixture
def reviewers(db):
    group = baker.make(Group, name="Reviewers")
    group.permissions.add(Permission.objects.get(codename="decide_approvalrequest"))
    return group


@pytest.fixture
def reviewer(reviewers):
    user = baker.make(User, is_active=True)
    user.groups.add(reviewers)
    return user


def test_a_second_request_checks_permissions_without_reading_them(reviewer):
    assert permission_queries(lambda: fresh(reviewer).has_perm(DECIDE))
    assert not permission_queries(lambda: fresh(reviewer).has_perm(DECIDE))
    assert fresh(reviewer).has_perm(DECIDE)


def test_leaving_the_group_takes_the_permission_away_at_once(reviewer, reviewers):
    assert fresh(reviewer).has_perm(DECIDE)
    reviewer.groups.remove(reviewers)
    assert not fresh(reviewer).has_perm(DECIDE)


def test_a_permission_removed_from_the_group_is_gone_at_once(reviewer, reviewers):
    assert fresh(reviewer).has_perm(DECIDE)
    reviewers.permissions.clear()
    assert not fresh(reviewer).has_perm(DECIDE)


def test_a_deleted_group_grants_nothing(reviewer, reviewers):
    assert fresh(reviewer).has_perm(DECIDE)
    reviewers.delete()
    assert not fresh(reviewer).has_perm(DECIDE)


def test_a_permission_granted_directly_is_seen_at_once(db):
    user = baker.make(User, is_active=True)
    assert not fresh(user).has_perm(DECIDE)
    user.user_permissions.add(Permission.objects.get(codename="decide_approvalrequest"))
    assert fresh(user).has_perm(DECIDE)


def test_joining_a_group_from_the_group_side_is_seen_at_once(db, reviewers):
    user = baker.make(User, is_active=True)
    assert not fresh(user).has_perm(DECIDE)
    reviewers.user_set.add(user)
    assert fresh(user).has_perm(DECIDE)


def test_a_deactivated_user_has_no_permission_even_while_one_is_cached(reviewer):
    assert fresh(reviewer).has_perm(DECIDE)
    User.objects.filter(pk=reviewer.pk).update(is_active=False)
    assert not fresh(reviewer).has_perm(DECIDE)


def test_a_new_user_never_inherits_the_answer_cached_for_a_deleted_one(reviewer):
    assert fresh(reviewer).has_perm(DECIDE)
    reviewer_id = reviewer.pk
    reviewer.delete()
    newcomer = baker.make(User, pk=reviewer_id, is_active=True)
    assert not fresh(newcomer).has_perm(DECIDE)


def test_an_answer_read_before_a_change_commits_is_not_kept(transactional_db, reviewers):
    """A request that read the permissions while a change was still uncommitted stored the old
    answer; the generation renewed after commit makes the next check read them again."""
    user = baker.make(User, is_active=True)
    user.groups.add(reviewers)
    with transaction.atomic():
        user.groups.remove(reviewers)
        # What a concurrent request could have stored meanwhile: the committed (old) answer,
        # stamped with the generation renewed at once.
        generation = cache.get(permission_cache.GENERATION_KEY)
        cache.set(permission_cache.answer_key(user.pk), (generation, {DECIDE}), 300)
    assert not fresh(user).has_perm(DECIDE)


def test_superusers_are_not_cached(db):
    admin = baker.make(User, is_active=True, is_superuser=True)
    assert fresh(admin).get_all_permissions()
    admin.is_superuser = False
    admin.save()
    assert fresh(admin).get_all_permissions() == set()


def test_the_generation_key_expires_in_a_shared_redis(reviewer, settings, test_redis):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": test_redis.url,
            "KEY_PREFIX": test_redis.prefix,
        }
    }
    assert fresh(reviewer).has_perm(DECIDE)
    reviewer.groups.clear()

    [key] = test_redis.client.scan_iter(f"{test_redis.prefix}:*{permission_cache.GENERATION_KEY}")
    assert 0 < test_redis.client.ttl(key) <= permission_cache.GENERATION_TIMEOUT
