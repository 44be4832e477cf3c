"""Linking Telegram users to Django users: only a linked approver may decide from Telegram."""

from django.contrib.auth.models import User

from .models import TelegramAccount


def link(user: User, telegram_user_id: int, username: str = "") -> TelegramAccount:
    """Link ``telegram_user_id`` to ``user``, unless it is linked already (to anyone)."""
    account, _ = TelegramAccount.objects.get_or_create(
        telegram_user_id=telegram_user_id,
        defaults={"user": user, "telegram_username": username},
    )
    return account
