"""Time-zone ids as Chronos's users write them: tz database names (`Europe/Berlin`, `UTC`) and
Java's three-letter ids (`java.time.ZoneId.SHORT_IDS`, e.g. `PST`), which Chronos, a JVM
program, accepts in `scheduleTimeZone`. Pure."""

from __future__ import annotations

from datetime import timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

# java.time.ZoneId.SHORT_IDS: each short id and the zone (or fixed offset) Java gives it
JAVA_SHORT_IDS: dict[str, str] = {
    "ACT": "Australia/Darwin", "AET": "Australia/Sydney",
    "AGT": "America/Argentina/Buenos_Aires", "ART": "Africa/Cairo",
    "AST": "America/Anchorage", "BET": "America/Sao_Paulo", "BST": "Asia/Dhaka",
    "CAT": "Africa/Harare", "CNT": "America/St_Johns", "CST": "America/Chicago",
    "CTT": "Asia/Shanghai", "EAT": "Africa/Addis_Ababa", "ECT": "Europe/Paris",
    "IET": "America/Indiana/Indianapolis", "IST": "Asia/Kolkata", "JST": "Asia/Tokyo",
    "MIT": "Pacific/Apia", "NET": "Asia/Yerevan", "NST": "Pacific/Auckland",
    "PLT": "Asia/Karachi", "PNT": "America/Phoenix", "PRT": "America/Puerto_Rico",
    "PST": "America/Los_Angeles", "SST": "Pacific/Guadalcanal", "VST": "Asia/Ho_Chi_Minh",
    "EST": "-05:00", "MST": "-07:00", "HST": "-10:00",
}


def _fixed(offset: str) -> tzinfo:
    sign = -1 if offset.startswith("-") else 1
    hours, minutes = offset[1:].split(":")
    return timezone(sign * timedelta(hours=int(hours), minutes=int(minutes)), offset)


def zone_of(name: str) -> tzinfo:
    """The zone `name` names: a Java short id first (so `EST` is Java's fixed -05:00, as in
    Chronos), else a tz database name. Raises what ZoneInfo raises for an unknown name."""
    mapped = JAVA_SHORT_IDS.get(name)
    if mapped is None:
        return ZoneInfo(name)
    return _fixed(mapped) if mapped[0] in "+-" else ZoneInfo(mapped)
