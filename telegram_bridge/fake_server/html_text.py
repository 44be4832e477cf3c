"""``parse_mode=HTML`` as Telegram applies it: the text without its tags, and the entities.

Telegram answers 400 *can't parse entities* for a tag it does not support, a tag left open or
closed out of turn, an unknown named entity and a ``<`` that starts no tag; offsets and lengths of
entities are in UTF-16 code units. The fake applies the same rules, so a broken template fails in
the tests as it would in production, and the 4,096 limit is counted on the parsed text.
"""

from html.parser import HTMLParser

from .state import ApiError

TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "blockquote": "blockquote",
}
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse(markup: str) -> tuple[str, list[dict]]:
    """The text Telegram shows for ``markup`` and its entities; ``ApiError`` 400 when broken."""
    parser = _Parser()
    parser.feed(markup)
    parser.close()
    if parser.open_tags and parser.error is None:
        parser.error = f'Can\'t find end tag corresponding to start tag "{parser.open_tags[-1][0]}"'
    if parser.error is not None:
        raise ApiError(400, f"Bad Request: can't parse entities: {parser.error}")
    entities = sorted(parser.entities, key=lambda entity: (entity["offset"], -entity["length"]))
    return "".join(parser.text), entities


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.text = []
        self.length = 0
        self.open_tags = []
        self.entities = []
        self.error = None

    def _fail(self, message):
        if self.error is None:
            self.error = message

    def _add(self, text):
        self.text.append(text)
        self.length += units(text)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        kind = TAGS.get(tag)
        if kind is None or (tag == "span" and attributes.get("class") != "tg-spoiler"):
            self._fail(f'Unsupported start tag "{tag}"')
            return
        entity = {"type": kind, "offset": self.length}
        if tag == "a":
            if not attributes.get("href"):
                self._fail('Can\'t find "href" attribute of the tag "a"')
                return
            entity["url"] = attributes["href"]
        self.open_tags.append((tag, entity))

    def handle_endtag(self, tag):
        if not self.open_tags or self.open_tags[-1][0] != tag:
            self._fail(f'Unmatched end tag "{tag}"')
            return
        _, entity = self.open_tags.pop()
        entity["length"] = self.length - entity["offset"]
        if entity["length"]:
            self.entities.append(entity)

    def handle_data(self, data):
        if "<" in data:
            self._fail("Unexpected '<' that starts no tag; write &lt;")
        self._add(data)

    def handle_entityref(self, name):
        if name not in NAMED_ENTITIES:
            self._fail(f'Unsupported HTML entity "&{name};"')
            return
        self._add(NAMED_ENTITIES[name])

    def handle_charref(self, name):
        try:
            code = int(name[1:], 16) if name[:1] in ("x", "X") else int(name)
            self._add(chr(code))
        except (ValueError, OverflowError):
            self._fail(f'Invalid character reference "&#{name};"')

    def handle_comment(self, data):
        self._fail("Unsupported comment")

    def handle_decl(self, decl):
        self._fail("Unsupported declaration")

    def unknown_decl(self, data):
        self._fail("Unsupported declaration")
