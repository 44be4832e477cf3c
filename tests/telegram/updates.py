"""Telegram updates as the Bot API delivers them, for tests that feed the bridge directly."""

import itertools

APPROVER_CHAT = -100200300
ALICE = {"id": 1001, "is_bot": False, "first_name": "Alice", "username": "alice"}
MALLORY = {"id": 6666, "is_bot": False, "first_name": "Mallory", "username": "mallory"}

_ids = itertools.count(500_000)


def next_update_id():
    return next(_ids)


def text_update(text, *, sender=ALICE, chat_id=APPROVER_CHAT, message_id=None, update_id=None):
    update_id = update_id or next_update_id()
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id or update_id,
            "from": sender,
            "chat": {"id": chat_id, "type": "supergroup", "title": "Approvers"},
            "date": 1_700_000_000,
            "text": text,
        },
    }


def button_update(
    data, *, sender=ALICE, chat_id=APPROVER_CHAT, message_id=7, query_id=None, update_id=None
):
    update_id = update_id or next_update_id()
    return {
        "update_id": update_id,
        "callback_query": {
            "id": query_id or f"cq{update_id}",
            "from": sender,
            "message": {
                "message_id": message_id,
                "chat": {"id": chat_id, "type": "supergroup", "title": "Approvers"},
                "date": 1_700_000_000,
                "text": "Approval request",
            },
            "chat_instance": "42",
            "data": data,
        },
    }
