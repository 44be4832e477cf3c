"""Dates as on-call staff compare them across pages and logs: ISO order, 24-hour clock, short.

"2026-12-02 14:07" fits an admin list column where "Dec. 2, 2026, 2:07 p.m." pushes others out.
"""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
TIME_FORMAT = "H:i"
