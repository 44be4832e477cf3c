"""The Bot API methods the fake implements, one function each, with Telegram's validation errors.

Each function takes the server state (its condition held by the caller) and the request's
parameters (JSON values, or strings from a form or query string) and returns the ``result``, or
raises ``ApiError``. ``METHODS`` is keyed by lower-case names: Telegram ignores the case of
method names.
"""

import json
import re
import time
from typing import Any, NamedTuple

from . import html_text
from .state import ApiError

MAX_TEXT_LENGTH = 4096
PARSE_MODES = frozenset({"html", "markdown", "markdownv2"})
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
SECRET_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"


class Described(NamedTuple):
    """A result Telegram answers with a ``description`` beside it (``setWebhook``, …)."""

    result: Any
    description: str


def _int(params, name, *, required=False, default=None):
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"Bad Request: {name} is empty")
        return default
    if isinstance(value, bool):
        raise ApiError(400, f"Bad Request: invalid {name} specified")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid {name} specified") from None


def _json(params, name):
    """A parameter that is an object or array: form bodies carry it as a JSON string."""
    value = params.get(name)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(400, f"Bad Request: can't parse {name} JSON object") from None
    return value


def _chat_id(state, params):
    value = params.get("chat_id")
    if isinstance(value, str) and value.startswith("@"):
        raise ApiError(400, "Bad Request: chat not found")
    chat_id = _int(params, "chat_id", required=True)
    state.check_chat(chat_id)
    return chat_id


def _text(params):
    """The message text and entities as Telegram stores them (``parse_mode=HTML`` applied)."""
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    parse_mode = params.get("parse_mode")
    if parse_mode and str(parse_mode).lower() not in PARSE_MODES:
        raise ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode}")
    content: dict[str, Any] = {"text": text}
    if str(parse_mode).lower() == "html":
        text, entities = html_text.parse(text)
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        content = {"text": text, **({"entities": entities} if entities else {})}
    if html_text.units(text) > MAX_TEXT_LENGTH:
        raise ApiError(400, "Bad Request: message is too long")
    return content


def _reply_to(state, params, chat_id):
    """The message ``reply_parameters`` names, or None; 400 when it is missing and required."""
    reply = _json(params, "reply_parameters")
    if reply is None:
        return None
    if not isinstance(reply, dict):
        raise ApiError(400, "Bad Request: can't parse reply parameters JSON object")
    message_id = _int(reply, "message_id", required=True)
    target = state.chat_messages.get((_int(reply, "chat_id", default=chat_id), message_id))
    if target is None and not _flag(reply, "allow_sending_without_reply"):
        raise ApiError(400, "Bad Request: message to be replied not found")
    if target is None:
        return None
    return {key: value for key, value in target.items() if key != "reply_to_message"}


def _reply_markup(params):
    """The inline keyboard, checked as Telegram checks it; None when there is none."""
    markup = _json(params, "reply_markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return markup
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ApiError(
            400,
            'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup '
            "must be an Array of Arrays",
        )
    for button in (button for row in rows for button in row):
        if not isinstance(button, dict) or not button.get("text"):
            raise ApiError(
                400,
                "Bad Request: can't parse inline keyboard button: Text buttons "
                "are unallowed in the inline keyboard",
            )
        data = button.get("callback_data")
        if data is not None and not 1 <= len(str(data).encode()) <= 64:
            raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    return markup


def _message(state, params):
    chat_id = _chat_id(state, params)
    message_id = _int(params, "message_id", required=True)
    message = state.chat_messages.get((chat_id, message_id))
    if message is None:
        raise ApiError(400, "Bad Request: message to edit not found")
    return chat_id, message


def get_me(state, params):
    return state.bot_user


def send_message(state, params):
    chat_id = _chat_id(state, params)
    content = _text(params)
    markup = _reply_markup(params)
    if markup and markup.get("inline_keyboard"):
        content["reply_markup"] = markup
    reply_to = _reply_to(state, params, chat_id)
    if reply_to is not None:
        content["reply_to_message"] = reply_to
    state.check_flood(chat_id)
    message = state.new_message(chat_id, state.bot_user, **content)
    state.record_sent("sendMessage", params, message, chat_id, message["message_id"])
    return message


def edit_message_text(state, params):
    chat_id, message = _message(state, params)
    content = _text(params)
    markup = _reply_markup(params)
    if (
        content["text"] == message.get("text")
        and content.get("entities") == message.get("entities")
        and markup == message.get("reply_markup")
    ):
        raise ApiError(400, NOT_MODIFIED)
    state.check_flood(chat_id)
    message.pop("entities", None)
    message.update(content)
    message.pop("reply_markup", None)
    if markup and markup.get("inline_keyboard"):
        message["reply_markup"] = markup
    message["edit_date"] = int(time.time())
    state.record_sent("editMessageText", params, message, chat_id, message["message_id"])
    return message


def edit_message_reply_markup(state, params):
    chat_id, message = _message(state, params)
    markup = _reply_markup(params)
    if markup == message.get("reply_markup") or (not markup and "reply_markup" not in message):
        raise ApiError(400, NOT_MODIFIED)
    state.check_flood(chat_id)
    message.pop("reply_markup", None)
    if markup and markup.get("inline_keyboard"):
        message["reply_markup"] = markup
    message["edit_date"] = int(time.time())
    state.record_sent("editMessageReplyMarkup", params, message, chat_id, message["message_id"])
    return message


def answer_callback_query(state, params):
    query_id = str(params.get("callback_query_id") or "")
    query = state.callback_queries.get(query_id)
    if query is None or query["answered"]:
        raise ApiError(400, QUERY_TOO_OLD)
    text = params.get("text") or ""
    if len(text) > 200:
        raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
    query["answered"] = True
    state.record_sent("answerCallbackQuery", params, True)
    return True


def send_chat_action(state, params):
    chat_id = _chat_id(state, params)
    if params.get("action") not in CHAT_ACTIONS:
        raise ApiError(400, "Bad Request: wrong parameter action in request")
    state.record_sent("sendChatAction", params, True, chat_id)
    return True


def get_updates(state, params):
    """Long poll: answer as soon as an update is pending, or after ``timeout`` seconds."""
    if state.webhook.url:
        raise ApiError(
            409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook "
            "to delete the webhook first",
        )
    offset = _int(params, "offset")
    limit = min(max(_int(params, "limit", default=100), 1), 100)
    timeout = max(_int(params, "timeout", default=0), 0)
    allowed = _json(params, "allowed_updates")
    if allowed is not None:
        state.allowed_updates = list(allowed)
    state.confirm_below(offset)
    state.poll_generation += 1
    generation = state.poll_generation
    state.cond.notify_all()
    deadline = time.monotonic() + timeout
    while True:
        if state.poll_generation != generation:
            raise ApiError(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one bot "
                "instance is running",
            )
        updates = state.take_for_poll(limit)
        remaining = deadline - time.monotonic()
        if updates or remaining <= 0 or state.stopped.is_set():
            return updates
        state.cond.wait(remaining)


def set_webhook(state, params):
    url = str(params.get("url") or "")
    if not url:
        return delete_webhook(state, params)
    if not url.startswith(("https://", "http://")):
        raise ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
    secret = str(params.get("secret_token") or "")
    if secret and not SECRET_TOKEN_PATTERN.fullmatch(secret):
        raise ApiError(400, "Bad Request: secret token contains unallowed characters")
    allowed = _json(params, "allowed_updates")
    if allowed is not None:
        state.allowed_updates = list(allowed)
    if _flag(params, "drop_pending_updates"):
        state.pending = []
    state.webhook.url = url
    state.webhook.secret_token = secret
    state.webhook.max_connections = _int(params, "max_connections", default=40)
    state.webhook.last_error_date = None
    state.webhook.last_error_message = ""
    state.cond.notify_all()
    return Described(True, "Webhook was set")


def delete_webhook(state, params):
    if _flag(params, "drop_pending_updates"):
        state.pending = []
    was_set = bool(state.webhook.url)
    state.webhook.url = ""
    state.webhook.secret_token = ""
    state.cond.notify_all()
    return Described(True, "Webhook was deleted" if was_set else "Webhook is already deleted")


def get_webhook_info(state, params):
    info = {
        "url": state.webhook.url,
        "has_custom_certificate": False,
        "pending_update_count": len(state.pending),
    }
    if state.webhook.url:
        info["max_connections"] = state.webhook.max_connections
        if state.allowed_updates is not None:
            info["allowed_updates"] = state.allowed_updates
    if state.webhook.last_error_date:
        info["last_error_date"] = state.webhook.last_error_date
        info["last_error_message"] = state.webhook.last_error_message
    return info


def _flag(params, name):
    value = params.get(name)
    if isinstance(value, str):
        return value.lower() in {"1", "true", "yes"}
    return bool(value)


METHODS = {
    "getme": get_me,
    "sendmessage": send_message,
    "editmessagetext": edit_message_text,
    "editmessagereplymarkup": edit_message_reply_markup,
    "answercallbackquery": answer_callback_query,
    "sendchataction": send_chat_action,
    "getupdates": get_updates,
    "setwebhook": set_webhook,
    "deletewebhook": delete_webhook,
    "getwebhookinfo": get_webhook_info,
}
