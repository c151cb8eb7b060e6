"""Fire times of cron expressions: pure functions on explicit instants, no clock.

Tables give an expression, a zone, a starting instant (UTC) and the fire times
expected after it (UTC). The daylight-saving cases use Europe/Berlin in 2026: spring
forward on 2026-03-29 (02:00 CET -> 03:00 CEST, at 01:00Z), fall back on 2026-10-25
(03:00 CEST -> 02:00 CET, at 01:00Z); and America/New_York (2026-03-08, 2026-11-01).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from scheduler_core.runtime import cron

BERLIN = "Europe/Berlin"


def utc(text: str) -> dt.datetime:
    """'2026-10-25 00:30:00' (UTC) -> an aware datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def fires(expr: str, tz: str, start: dt.datetime, count: int) -> list[dt.datetime]:
    out = []
    at = start
    for _ in range(count):
        at = cron.next_fire(expr, tz, at)
        out.append(at)
    return out


def local_date_count(expr: str, tz: str, day: dt.date) -> int:
    """How many times ``expr`` fires on the local calendar ``day``."""
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    n, at = 0, start - dt.timedelta(microseconds=1)
    while (at := cron.next_fire(expr, tz, at)) < end:
        n += 1
    return n


# -- next fire times ---------------------------------------------------------------------

NEXT_FIRES = [
    # (case, expression, zone, after (UTC), the next fires (UTC))
    ("every 5 minutes", "*/5 * * * *", "UTC", "2026-05-04 12:03:10",
     ["2026-05-04 12:05:00", "2026-05-04 12:10:00", "2026-05-04 12:15:00"]),
    ("strictly after a fire time", "*/5 * * * *", "UTC", "2026-05-04 12:05:00",
     ["2026-05-04 12:10:00"]),
    ("weekdays at 09:00", "0 9 * * 1-5", "UTC", "2026-05-08 10:00:00",  # a Friday
     ["2026-05-11 09:00:00", "2026-05-12 09:00:00"]),
    ("day-of-month or day-of-week", "0 0 1 * 0", "UTC", "2026-05-30 00:00:00",
     ["2026-05-31 00:00:00", "2026-06-01 00:00:00", "2026-06-07 00:00:00"]),
    ("@hourly", "@hourly", "UTC", "2026-05-04 12:03:10",
     ["2026-05-04 13:00:00", "2026-05-04 14:00:00"]),
    ("@daily", "@daily", "UTC", "2026-05-04 12:03:10",
     ["2026-05-05 00:00:00", "2026-05-06 00:00:00"]),
    ("@weekly is Sunday midnight", "@weekly", "UTC", "2026-05-04 12:03:10",
     ["2026-05-10 00:00:00", "2026-05-17 00:00:00"]),
    ("@monthly", "@monthly", "UTC", "2026-05-04 12:03:10",
     ["2026-06-01 00:00:00", "2026-07-01 00:00:00"]),
    ("@yearly", "@yearly", "UTC", "2026-05-04 12:03:10",
     ["2027-01-01 00:00:00", "2028-01-01 00:00:00"]),
    ("seconds field first", "*/10 * * * * *", "UTC", "2026-05-04 12:00:05",
     ["2026-05-04 12:00:10", "2026-05-04 12:00:20", "2026-05-04 12:00:30"]),
    ("every second, from a fraction", "* * * * * *", "UTC", "2026-05-04 12:00:05.300000",
     ["2026-05-04 12:00:06", "2026-05-04 12:00:07"]),
    ("second 30 of minute 0 of hour 12", "30 0 12 * * *", "UTC", "2026-05-04 11:00:00",
     ["2026-05-04 12:00:30", "2026-05-05 12:00:30"]),
    ("a zone without daylight saving", "30 9 * * *", "Asia/Kolkata", "2026-05-04 00:00:00",
     ["2026-05-04 04:00:00", "2026-05-05 04:00:00"]),
    ("a zone in summer time", "0 9 * * *", "America/New_York", "2026-07-01 00:00:00",
     ["2026-07-01 13:00:00"]),
    ("a zone in winter time", "0 9 * * *", "America/New_York", "2026-01-01 00:00:00",
     ["2026-01-01 14:00:00"]),
    # Daylight saving, fixed-time expressions: the Debian cron rule.
    ("Berlin autumn: a daily 02:30 fires once, at its first occurrence", "30 2 * * *",
     BERLIN, "2026-10-24 00:00:00",
     ["2026-10-24 00:30:00", "2026-10-25 00:30:00", "2026-10-26 01:30:00"]),
    ("Berlin spring: a daily 02:30 fires at the transition, 03:00 local", "30 2 * * *",
     BERLIN, "2026-03-28 00:00:00",
     ["2026-03-28 01:30:00", "2026-03-29 01:00:00", "2026-03-30 00:30:00"]),
    ("Berlin spring: fires inside the gap collapse into one at the transition",
     "*/30 2 * * *", BERLIN, "2026-03-28 23:59:00",
     ["2026-03-29 01:00:00", "2026-03-30 00:00:00", "2026-03-30 00:30:00"]),
    ("Berlin autumn: a fixed hour repeated runs each minute once", "*/30 2 * * *",
     BERLIN, "2026-10-24 23:59:00",
     ["2026-10-25 00:00:00", "2026-10-25 00:30:00", "2026-10-26 01:00:00"]),
    ("Berlin spring: a fire at 03:00 itself is not doubled", "0 2,3 * * *", BERLIN,
     "2026-03-28 23:00:00", ["2026-03-29 01:00:00", "2026-03-30 00:00:00"]),
    ("New York autumn: a daily 01:30 fires once", "30 1 * * *", "America/New_York",
     "2026-10-31 12:00:00", ["2026-11-01 05:30:00", "2026-11-02 06:30:00"]),
    ("New York spring: a daily 02:15 fires at 03:00 EDT", "15 2 * * *", "America/New_York",
     "2026-03-07 12:00:00", ["2026-03-08 07:00:00", "2026-03-09 06:15:00"]),
    # Daylight saving, interval expressions (every hour matches): real time.
    ("Berlin autumn: every 30 minutes keeps going through both 02:xx hours",
     "*/30 * * * *", BERLIN, "2026-10-24 23:45:00",
     ["2026-10-25 00:00:00", "2026-10-25 00:30:00", "2026-10-25 01:00:00",
      "2026-10-25 01:30:00", "2026-10-25 02:00:00"]),
    ("Berlin spring: every 30 minutes has no fires in the gap and no hole in real time",
     "*/30 * * * *", BERLIN, "2026-03-28 23:45:00",
     ["2026-03-29 00:00:00", "2026-03-29 00:30:00", "2026-03-29 01:00:00",
      "2026-03-29 01:30:00"]),
    ("Berlin autumn: every 2 seconds across the change", "*/2 * * * * *", BERLIN,
     "2026-10-25 00:59:57", ["2026-10-25 00:59:58", "2026-10-25 01:00:00",
                             "2026-10-25 01:00:02"]),
]


@pytest.mark.parametrize(("expr", "tz", "after", "expected"),
                         [c[1:] for c in NEXT_FIRES], ids=[c[0] for c in NEXT_FIRES])
def test_next_fires(expr: str, tz: str, after: str, expected: list[str]) -> None:
    assert [utc(e) for e in expected] == fires(expr, tz, utc(after), len(expected))


@pytest.mark.parametrize(("expr", "tz", "after", "expected"),
                         [c[1:] for c in NEXT_FIRES], ids=[c[0] for c in NEXT_FIRES])
def test_prev_fire_walks_the_same_fires_backwards(expr: str, tz: str, after: str,
                                                  expected: list[str]) -> None:
    walked = [cron.prev_fire(expr, tz, utc(e)) for e in expected[1:]]
    assert [utc(e) for e in expected[:-1]] == walked


def test_the_berlin_2026_10_25_daily_0230_fires_once_that_day() -> None:
    # croniter 7.0 alone fires it twice (00:30Z and 01:30Z); Debian's cron once.
    assert 1 == local_date_count("30 2 * * *", BERLIN, dt.date(2026, 10, 25))


def test_the_berlin_2026_03_29_daily_0230_fires_once_that_day() -> None:
    assert 1 == local_date_count("30 2 * * *", BERLIN, dt.date(2026, 3, 29))


def test_the_berlin_2026_03_29_daily_0230_fires_at_0300_local() -> None:
    fire = cron.next_fire("30 2 * * *", BERLIN, utc("2026-03-28 12:00:00"))
    assert dt.datetime(2026, 3, 29, 3, 0) == fire.astimezone(ZoneInfo(BERLIN)).replace(
        tzinfo=None)


def test_an_hourly_job_fires_25_times_on_the_berlin_autumn_day() -> None:
    assert 25 == local_date_count("0 * * * *", BERLIN, dt.date(2026, 10, 25))


def test_an_hourly_job_fires_23_times_on_the_berlin_spring_day() -> None:
    assert 23 == local_date_count("0 * * * *", BERLIN, dt.date(2026, 3, 29))


# -- last_fire, inputs ------------------------------------------------------------------

LAST_FIRES = [
    ("a fire time itself", "* * * * * *", "2026-05-04 12:00:05", "2026-05-04 12:00:05"),
    ("between fires", "*/10 * * * * *", "2026-05-04 12:00:05.5", "2026-05-04 12:00:00"),
    ("the day before", "0 3 * * *", "2026-05-04 02:59:59", "2026-05-03 03:00:00"),
]


@pytest.mark.parametrize(("expr", "until", "expected"), [c[1:] for c in LAST_FIRES],
                         ids=[c[0] for c in LAST_FIRES])
def test_last_fire_is_the_latest_at_or_before(expr: str, until: str, expected: str) -> None:
    assert utc(expected) == cron.last_fire(expr, "UTC", utc(until))


def test_a_fire_time_is_returned_in_utc() -> None:
    fire = cron.next_fire("0 9 * * *", "Asia/Tokyo", utc("2026-05-04 00:00:00"))
    assert (dt.UTC, utc("2026-05-05 00:00:00")) == (fire.tzinfo, fire)


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        cron.next_fire("* * * * *", "UTC", dt.datetime(2026, 5, 4))


INVALID = [
    ("garbage", "every day", "UTC", "cron"),
    ("minute 60", "60 * * * *", "UTC", "cron"),
    ("seven fields", "* * * * * * *", "UTC", "cron"),
    ("four fields", "* * * *", "UTC", "cron"),
    ("unknown shorthand", "@reboot", "UTC", "cron"),
    ("unknown zone", "* * * * *", "Mars/Olympus", "timezone"),
    ("a path as zone", "* * * * *", "../../etc/passwd", "timezone"),
    ("the host's zone", "* * * * *", "localtime", "timezone"),
    ("posixrules", "* * * * *", "posixrules", "timezone"),
    ("a zone under posix/", "* * * * *", "posix/Europe/Berlin", "timezone"),
    ("a zone under right/", "* * * * *", "right/UTC", "timezone"),
    ("an absolute path as zone", "* * * * *", "/usr/share/zoneinfo/UTC", "timezone"),
    ("a zone in the wrong case", "* * * * *", "europe/berlin", "timezone"),
    ("a huge minute step", "*/99999999999999999999 * * * *", "UTC", "cron"),
    ("minute step 61", "*/61 * * * *", "UTC", "cron"),
    ("minute step 0", "*/0 * * * *", "UTC", "cron"),
    ("a step on a range", "1-5/100 * * * *", "UTC", "cron"),
    ("a step in a list", "0,*/99 * * * *", "UTC", "cron"),
    ("hour step 25", "0 */25 * * *", "UTC", "cron"),
    ("day-of-month step 32", "0 0 */32 * *", "UTC", "cron"),
    ("month step 13", "0 0 1 */13 *", "UTC", "cron"),
    ("day-of-week step 8", "0 0 * * */8", "UTC", "cron"),
    ("second step 61", "*/61 * * * * *", "UTC", "cron"),
    ("a huge second step", "*/99999999999999999999 * * * * *", "UTC", "cron"),
]


@pytest.mark.parametrize(("expr", "tz", "field"), [c[1:] for c in INVALID],
                         ids=[c[0] for c in INVALID])
def test_invalid_input_names_its_field(expr: str, tz: str, field: str) -> None:
    with pytest.raises(cron.CronError) as caught:
        cron.validate(expr, tz)
    assert field == caught.value.field
    assert str(caught.value)


@pytest.mark.parametrize("expr", ["*/60 * * * *", "0 */24 * * *", "0 0 */31 * *",
                                  "0 0 1 */12 *", "0 0 * * */7", "*/60 * * * * *",
                                  "*/005 * * * *", "0-30/30 * * * *", "0 0 * JAN/2 MON-FRI/2"])
def test_a_step_up_to_the_field_s_number_of_values_is_accepted(expr: str) -> None:
    cron.validate(expr, "UTC")


def test_a_step_as_long_as_the_field_fires_once_per_cycle() -> None:
    """*/60 in the minute field is every 60 minutes: hourly."""
    assert [utc("2026-05-04 13:00:00"), utc("2026-05-04 14:00:00")] == fires(
        "*/60 * * * *", "UTC", utc("2026-05-04 12:03:10"), 2)


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires",
                                "Etc/GMT+5", "GMT"])
def test_an_iana_zone_name_is_accepted(tz: str) -> None:
    cron.validate("* * * * *", tz)


def test_an_expression_that_never_fires_raises_value_error() -> None:
    with pytest.raises(ValueError):
        cron.next_fire("0 0 31 2 *", "UTC", utc("2026-01-01 00:00:00"))


# -- the rule, read second by second -----------------------------------------------------


def fires_by_reading_the_rule(expr: str, tz: str, lo: dt.datetime,
                              hi: dt.datetime) -> list[dt.datetime]:
    """The fires in [lo, hi], found by looking at every minute's wall time: an interval
    expression fires whenever the wall time matches; a fixed-time one at the first
    occurrence of a matching wall time, and at a transition that skipped one."""
    text, every_hour = cron._compile(expr)
    zone = ZoneInfo(tz)
    minute = dt.timedelta(minutes=1)
    out, at = [], lo
    while at <= hi:
        local = at.astimezone(zone)
        wall = local.replace(tzinfo=None)
        previous = (at - minute).astimezone(zone).replace(tzinfo=None)
        skipped = []
        w = previous + minute
        while w < wall:
            skipped.append(w)
            w += minute
        matches = croniter.match(text, wall)
        if every_hour and matches:
            out.append(at)
        elif not every_hour and ((matches and local.fold == 0)
                                 or any(croniter.match(text, s) for s in skipped)):
            out.append(at)
        at += minute
    return out


def fires_between(expr: str, tz: str, lo: dt.datetime, hi: dt.datetime) -> list[dt.datetime]:
    out, at = [], lo - dt.timedelta(microseconds=1)
    while (at := cron.next_fire(expr, tz, at)) <= hi:
        out.append(at)
    return out


TRANSITIONS = [
    ("Europe/Berlin", "2026-03-29 01:00:00"), ("Europe/Berlin", "2026-10-25 01:00:00"),
    ("America/New_York", "2026-03-08 07:00:00"), ("America/New_York", "2026-11-01 06:00:00"),
    # a 30-minute shift
    ("Australia/Lord_Howe", "2026-04-04 15:00:00"),
    ("Australia/Lord_Howe", "2026-10-03 15:30:00"),
]
EXPRESSIONS = ["30 2 * * *", "*/30 * * * *", "*/7 2 * * *", "0 * * * *", "15,45 1-3 * * *",
               "0 2,3 * * *", "59 1 * * *", "2 2 * * *"]


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize(("tz", "change"), TRANSITIONS, ids=[f"{z} {t[:10]}" for z, t in TRANSITIONS])
def test_fires_around_a_change_agree_with_the_rule_read_minute_by_minute(
        tz: str, change: str, expr: str) -> None:
    lo, hi = utc(change) - dt.timedelta(hours=2), utc(change) + dt.timedelta(hours=2)
    assert fires_by_reading_the_rule(expr, tz, lo, hi) == fires_between(expr, tz, lo, hi)
