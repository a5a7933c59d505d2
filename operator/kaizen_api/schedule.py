"""Cron schedules and time zones that a CronJob accepts, checked at admission.

`CRON_PATTERN` range-checks each of the five fields (minute 0-59, hour 0-23, day of month 1-31,
month 1-12 or JAN-DEC, day of week 0-7 or SUN-SAT, names in any case), each a comma-separated list
of `*`, a value or a range, with an optional `/step` (step >= 1), or one of the @macros. `?` is
allowed for the day fields, as the CronJob controller's parser allows it. It does not check that a
range's start is below its end.

`TIME_ZONES` are the IANA names of the tz database the pinned `tzdata` package ships (its
`zones` list, links such as `US/Pacific` included); the CRD carries them as an enum.
"""

from __future__ import annotations

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
    item = f"(({star})|({value})(-({value}))?)(/[1-9][0-9]*)?"
    return f"{item}(,{item})*"


_MINUTE = "[0-5]?[0-9]"
_HOUR = "[01]?[0-9]|2[0-3]"
_DOM = "0?[1-9]|[12][0-9]|3[01]"
_MONTH = f"0?[1-9]|1[0-2]|{_names(MONTHS)}"
_DOW = f"0?[0-7]|{_names(DAYS)}"

CRON_PATTERN = (
    rf"^(@({'|'.join(MACROS)})|"
    + r"\s+".join(
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
