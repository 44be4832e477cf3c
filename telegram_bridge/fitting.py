"""Texts cut to what Telegram accepts, counted the way Telegram counts.

Telegram refuses a message longer than 4,096 characters (200 for a callback answer), counted
after entity parsing: with ``parse_mode=HTML`` the tags do not count and ``&lt;`` is one
character; lengths are in UTF-16 code units, as its entity offsets are. A refused message would be
a dead letter, so ``outbox.enqueue`` cuts every text here before it is queued: whole tags and
entities are kept, the text is ended with an ellipsis, and the tags left open are closed.
"""

import re

ELLIPSIS = "…"
# Telegram's limits per method, on the text after entity parsing.
TEXT_LIMITS = {"sendMessage": 4096, "editMessageText": 4096, "answerCallbackQuery": 200}
# A tag, an entity, or one character of text.
TOKEN = re.compile(r"<[^<>]*>|&#?[0-9A-Za-z]+;|.", re.DOTALL)
TAG_NAME = re.compile(r"^</?\s*([A-Za-z0-9-]+)")


def units(text: str) -> int:
    """Length in UTF-16 code units: a character outside the BMP counts two."""
    return len(text.encode("utf-16-le")) // 2


def visible_length(text: str, *, html: bool) -> int:
    """The length Telegram counts: the text with HTML tags gone and each entity one character."""
    if not html:
        return units(text)
    return sum(_token_units(token) for token in TOKEN.findall(text))


def fit(text: str, limit: int, *, html: bool) -> str:
    """``text`` unchanged if it fits in ``limit``; else cut to fit, ending with an ellipsis."""
    # Tags and entities only shorten what Telegram counts, so a text that fits unparsed (the
    # common case, a message well under the limit) is not counted token by token.
    if units(text) <= limit or (html and visible_length(text, html=True) <= limit):
        return text
    budget = limit - units(ELLIPSIS)
    if not html:
        kept = []
        for char in text:
            budget -= units(char)
            if budget < 0:
                break
            kept.append(char)
        return "".join(kept) + ELLIPSIS
    kept = []
    open_tags: list[str] = []
    for token in TOKEN.findall(text):
        cost = _token_units(token)
        if cost > budget:
            break
        budget -= cost
        kept.append(token)
        _track(token, open_tags)
    closing = "".join(f"</{name}>" for name in reversed(open_tags))
    return "".join(kept) + ELLIPSIS + closing


def _token_units(token):
    if token.startswith("<") and token.endswith(">"):
        return 0
    if token.startswith("&") and token.endswith(";") and len(token) > 2:
        return 1
    return units(token)


def _track(token, open_tags):
    """Keep the stack of tags opened and not yet closed."""
    if not (token.startswith("<") and token.endswith(">")):
        return
    match = TAG_NAME.match(token)
    if match is None or token.endswith("/>"):
        return
    name = match.group(1).lower()
    if token.startswith("</"):
        if name in open_tags:
            del open_tags[len(open_tags) - 1 - open_tags[::-1].index(name) :]
        return
    open_tags.append(name)
