"""When a scheduled send goes out: a wall-clock time in an IANA zone, read with `zoneinfo`.

`resolve_time("2026-12-02 07:00", "Europe/Berlin")` gives the UTC instant. Across a
daylight-saving change (PEP 495):
- a local time that does not exist (the spring-forward gap, 02:30 on the night clocks go from
  02:00 to 03:00) is refused, with the hour the clocks skip and the times around it;
- a local time that happens twice (the autumn fold, 02:30 on the night clocks go back from
  03:00 to 02:00) means its first occurrence (`fold=0`), and the note says so and how to name
  the second: write the offset, e.g. `2026-10-25 02:30+01:00`.
A time written with an offset (`+01:00`, `Z`) is that instant; with a zone as well, the offset
must be one the zone uses at that moment.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import zoneinfo
from dataclasses import dataclass

from newsletter.errors import ScheduleError

UTC = dt.UTC
FORMAT_HINT = "YYYY-MM-DD HH:MM such as 2026-12-02 07:00 (optionally with an offset: +01:00)"
# A date alone would silently mean midnight: refused. Whole seconds are kept (and shown when
# not :00); a fraction of a second is refused rather than silently dropped.
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_FRACTION = re.compile(r"\d{4}-\d{2}-\d{2}[ Tt]\d{2}:\d{2}:\d{2}[.,]")


@dataclass(frozen=True)
class SendTime:
    """A resolved send time: the instant (aware, UTC), the zone it was given in, and a note
    for the person scheduling (an ambiguous local time: which of the two was taken)."""

    at: dt.datetime
    zone: str
    note: str | None = None


def default_zone(configured: str | None) -> str:
    """`timezone:` of newsletter.yaml, else the machine's zone (tzlocal), else UTC."""
    if configured:
        return configured
    try:
        import tzlocal

        return tzlocal.get_localzone_name() or "UTC"
    except Exception:
        return "UTC"


def zone_info(name: str) -> zoneinfo.ZoneInfo:
    """The zone, or ScheduleError naming the closest known zone."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        hint = difflib.get_close_matches(name, zoneinfo.available_timezones(), n=1)
        suggestion = f" (did you mean {hint[0]}?)" if hint else ""
        raise ScheduleError(
            f"unknown time zone {name!r}{suggestion}: use an IANA name such as Europe/Berlin, "
            "America/New_York or UTC"
        ) from None


def resolve_time(text: str, zone_name: str, *, zone_given: bool = True) -> SendTime:
    """The instant `text` names in `zone_name` (see the module docstring); ScheduleError for a
    time that cannot be read, an unknown zone, a nonexistent local time or an offset the zone
    does not use (checked only when `zone_given`, i.e. --tz was typed)."""
    zone = zone_info(zone_name)
    if _DATE_ONLY.fullmatch(text.strip()):
        raise ScheduleError(
            f"{text.strip()!r} has no time of day (it would mean midnight): give one, e.g. "
            f'"{text.strip()} 07:00"'
        )
    if _FRACTION.match(text.strip()):
        raise ScheduleError(
            f"{text.strip()!r}: a send time has whole seconds at most ({FORMAT_HINT}, or HH:MM:SS)"
        )
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(f"cannot read the time {text!r}: expected {FORMAT_HINT}") from None
    if moment.tzinfo is not None:
        at = moment.astimezone(UTC)
        if zone_given:
            offsets = {_offset(moment.replace(tzinfo=zone, fold=f)) for f in (0, 1)}
            if _offset(moment) not in offsets:
                raise ScheduleError(
                    f"{text.strip()}: {zone_name} is at {' or '.join(sorted(offsets))} then, "
                    f"not {_offset(moment)}; leave out the offset or --tz"
                )
        return SendTime(at, zone_name)
    first, second = moment.replace(tzinfo=zone, fold=0), moment.replace(tzinfo=zone, fold=1)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != moment:
        raise ScheduleError(_gap_message(moment, zone, zone_name))
    if first.utcoffset() == second.utcoffset():
        return SendTime(first.astimezone(UTC), zone_name)
    shown = moment.strftime("%Y-%m-%d %H:%M")
    note = (
        f"{shown} happens twice in {zone_name} (the clocks go back that night): scheduled for "
        f"the first, {shown} {first.tzname()} ({show_utc(first)}); for the second write "
        f'"{shown}{_offset(second)}"'
    )
    return SendTime(first.astimezone(UTC), zone_name, note)


def _gap_message(moment: dt.datetime, zone: zoneinfo.ZoneInfo, name: str) -> str:
    before = moment.replace(tzinfo=zone, fold=0)
    after = moment.replace(tzinfo=zone, fold=1)
    # In a gap, fold=0 reads the time with the offset before the change, fold=1 after it
    # (PEP 495): the clocks jump forward by the difference, from the last minute that exists.
    start = moment.replace(second=0, microsecond=0)
    while not _exists(start - dt.timedelta(minutes=1), zone):
        start -= dt.timedelta(minutes=1)
        if moment - start > dt.timedelta(hours=24):  # cannot happen with real zone data
            break
    jump = (before.utcoffset() or dt.timedelta()) - (after.utcoffset() or dt.timedelta())
    end = start + abs(jump)
    return (
        f"{moment.strftime('%Y-%m-%d %H:%M')} does not exist in {name}: that night the clocks "
        f"jump from {start.strftime('%H:%M')} {before.tzname()} straight to "
        f"{end.strftime('%H:%M')} {after.tzname()}; choose a time before "
        f"{start.strftime('%H:%M')} or from {end.strftime('%H:%M')}"
    )


def _exists(moment: dt.datetime, zone: zoneinfo.ZoneInfo) -> bool:
    local = moment.replace(tzinfo=zone)
    return local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == moment


def _offset(moment: dt.datetime) -> str:
    offset = moment.utcoffset() or dt.timedelta()
    sign = "-" if offset < dt.timedelta() else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def show_local(at: dt.datetime, zone_name: str, *, seconds: bool = False) -> str:
    """`2026-12-02 07:00 CET (Europe/Berlin)`: the instant on the zone's wall clock."""
    local = at.astimezone(zone_info(zone_name))
    return f"{local.strftime(_shown(at, seconds))} {local.tzname()} ({zone_name})"


def show_utc(at: dt.datetime, *, seconds: bool = False) -> str:
    return at.astimezone(UTC).strftime(_shown(at, seconds) + " UTC")


def _shown(at: dt.datetime, seconds: bool) -> str:
    """HH:MM; with `seconds` (a due time, which keeps the seconds it was given with) HH:MM:SS
    when they are not :00."""
    return "%Y-%m-%d %H:%M:%S" if seconds and at.second else "%Y-%m-%d %H:%M"


def how_late(delta: dt.timedelta) -> str:
    """`2 h 5 min`, `3 min`, `1 d 4 h`: a lateness for people."""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if mins or not parts:
        parts.append(f"{mins} min")
    return " ".join(parts[:2])
