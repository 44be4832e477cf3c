import json
from typing import Any


def data(result: Any) -> dict[str, Any]:
    """A tool's answer, or its error, as the JSON it carries."""
    return json.loads(result.content[0].text)
