"""Scheduled sends (`send --at`, `schedule`, `send-due`, serve's background task).

`times.py` reads a wall-clock time in an IANA zone (zoneinfo, daylight-saving gaps and folds),
`store.py` holds table `send_schedules` and the lease claims, `sending.py` the use cases:
`schedule_send`, `list_schedules`, `cancel_schedule`, `run_due`.
"""

from newsletter.scheduling.sending import (
    Fired,
    Scheduled,
    cancel_schedule,
    list_schedules,
    process_owner,
    run_due,
    schedule_send,
    seconds_until_due,
)
from newsletter.scheduling.store import ScheduleRow
from newsletter.scheduling.times import SendTime, resolve_time, show_local, show_utc

__all__ = [
    "Fired",
    "ScheduleRow",
    "Scheduled",
    "SendTime",
    "cancel_schedule",
    "list_schedules",
    "process_owner",
    "resolve_time",
    "run_due",
    "schedule_send",
    "seconds_until_due",
    "show_local",
    "show_utc",
]
