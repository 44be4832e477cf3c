"""On-call drills: each reproduces one runbook's condition against the fake Bot API and the local
services, follows the runbook's recovery steps, checks that nothing was lost, and reports.

``manage.py drill NAME`` runs one, ``--all`` every one (CI does). The runbooks in docs/runbooks/
name their drill.
"""
