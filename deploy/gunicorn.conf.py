"""gunicorn settings for Claimdesk's web process (docs/deploy.md).

Threads (gthread) rather than one request per process: a request that waits (the Bot API, a lock
held by a concurrent decision, a slow client behind the proxy, an agent waiting for a decision on
``approvals/{id}/wait/``) holds a thread, not a whole worker. Three processes of four threads
measured best on two cores (bench/api_http.py); scale with WEB_CONCURRENCY (processes) on bigger
machines, about two per core, and give each process a thread per agent that may wait at once on
top (WEB_THREADS; a waiting thread holds no database connection, bench/approval_waits.py).
"""

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
threads = int(os.environ.get("WEB_THREADS", "4"))
# A request gets this long; a worker that stops answering is replaced.
timeout = 60
# On SIGTERM or a reload (SIGHUP), requests in flight get this long to finish.
graceful_timeout = 30
# The proxy in front keeps connections open; match its keepalive.
keepalive = 5
accesslog = "-"
errorlog = "-"
