r"""Cron schedules and time zones that a CronJob accepts, checked at admission.

`CRON_PATTERN` range-checks each of the five fields as the CronJob API's parser (robfig/cron's
ParseStandard) does: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, day of week
0-6 or SUN-SAT (names in any case), each a comma-separated list of `*`, a value or a range, with an
optional `/step` of 1-99 (a larger step fires no differently, and a huge one overflows that
parser), or one of the @macros. `?` is allowed for the day fields, as that parser allows it. Fields
are separated by `[\t\n\f\r ]`: RE2's `\s` spelled out, since pydantic's `\s` is Unicode. A
pattern cannot compare a range's two ends: `ranges_ascend` (and its CEL twin) refuses `5-2` or
`FRI-MON`, as that parser does.

`TIME_ZONES` are the IANA names of the tz database the pinned `tzdata` package ships (its
`zones` list, links such as `US/Pacific` included); the CRD carries them as an enum.
"""

from __future__ import annotations

import re
from importlib.resources import files

import tzdata

MACROS = ("annually", "yearly", "monthly", "weekly", "daily", "midnight", "hourly")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c}]" for c in word)


def _names(words: tuple[str, ...]) -> str:
    return "|".join(_any_case(w) for w in words)


def _field(value: str, *, question: bool = False) -> str:
    """One cron field: a comma-separated list of items, each `*`, V or V-V, optionally /step."""
    star = r"\*|\?" if question else r"\*"
    item = f"(({star})|({value})(-({value}))?)(/[1-9][0-9]?)?"
    return f"{item}(,{item})*"


_MINUTE = "[0-5]?[0-9]"
_HOUR = "[01]?[0-9]|2[0-3]"
_DOM = "0?[1-9]|[12][0-9]|3[01]"
_MONTH = f"0?[1-9]|1[0-2]|{_names(MONTHS)}"
_DOW = f"0?[0-6]|{_names(DAYS)}"

CRON_PATTERN = (
    rf"^(@({'|'.join(MACROS)})|"
    + r"[\t\n\f\r ]+".join(
        (
            f"({_field(_MINUTE)})",
            f"({_field(_HOUR)})",
            f"({_field(_DOM, question=True)})",
            f"({_field(_MONTH)})",
            f"({_field(_DOW, question=True)})",
        )
    )
    + ")$"
)

# A range in a lower-cased schedule, and the value of each of its ends (names of months and days).
_RANGE = "([0-9]{1,2}|[a-z]{3})-([0-9]{1,2}|[a-z]{3})"
_VALUES = {**{m: i for i, m in enumerate(MONTHS, 1)}, **{d: i for i, d in enumerate(DAYS)}}


_NAMES_CEL = "{" + ", ".join(f"'{k}': {v}" for k, v in _VALUES.items()) + "}"
RANGES_ASCEND_CEL = (
    f"self.schedule.lowerAscii().findAll('{_RANGE}').map(r, r.split('-').map(e, e in {_NAMES_CEL} ? "
    f"{_NAMES_CEL}[e] : (e.matches('^[0-9]+$') ? int(e) : 0))).all(p, p[0] <= p[1])"
)


def _value(end: str) -> int:
    return _VALUES[end] if end in _VALUES else int(end) if end.isdigit() else 0


def ranges_ascend(schedule: str) -> bool:
    """The Python twin of RANGES_ASCEND_CEL (on a schedule CRON_PATTERN admitted: ASCII only)."""
    return all(_value(a) <= _value(b) for a, b in re.findall(_RANGE, schedule.lower()))


def _zones() -> tuple[str, ...]:
    return tuple(sorted(files("tzdata").joinpath("zones").read_text(encoding="utf-8").split()))


TIME_ZONES: tuple[str, ...] = _zones()

TZ_VERSION: str = tzdata.IANA_VERSION
_ZONE_SET = frozenset(TIME_ZONES)


def known_time_zone(value: str) -> str:
    """The Python twin of the CRD's enum."""
    if value not in _ZONE_SET:
        raise ValueError(
            f"unknown IANA time zone {value!r} (tz database {TZ_VERSION}), e.g. Asia/Tokyo or UTC"
        )
    return value
