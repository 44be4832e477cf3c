"""The ``Actor`` behind an API request, built once at the edge of every write."""

import re

from backoffice.actors import Actor, Source, new_trace_id

# X-Request-ID as most proxies make it; the trace id column holds at most 64 characters.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# W3C Trace Context: version-traceid-parentid-flags; the trace id is the part shared by a trace.
TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def trace_id_for(request):
    """The caller's trace id (``X-Request-ID``, else ``traceparent``) if well-formed, else new."""
    request_id = request.headers.get("X-Request-ID", "").strip()
    if REQUEST_ID.fullmatch(request_id):
        return request_id
    traceparent = TRACEPARENT.fullmatch(request.headers.get("traceparent", "").strip().lower())
    if traceparent and traceparent.group(1) != "0" * 32:
        return traceparent.group(1)
    return new_trace_id()


def api_actor(request, label=""):
    return Actor(source=Source.API, user=request.user, label=label, trace_id=trace_id_for(request))
