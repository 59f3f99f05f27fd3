"""Simulator NLU, the date and time family: @sys.date, @sys.time, @sys.date-time, @sys.date-period, @sys.duration
and @sys.person, in Japanese and English, relative to the session's clock, in CX's value shapes.

English dates and times go to `dateparser` (maintained, many languages, a settable `RELATIVE_BASE` so the session
clock decides what "tomorrow" is, and a `period` telling a day from a month or a clock time). Its Japanese is weak
("3時" comes back as 13:00, "明日の午後3時" not at all), so Japanese clock times, dates, relative days, weeks, months
and durations are read by the explicit rules below first; dateparser is the fallback for other Japanese forms.
Durations and names have no dateparser equivalent and are read by rules in both languages.

Value shapes (CX sends them as structs of doubles): date `{year, month, day}`, time `{hours, minutes, seconds,
nanos}`, date-time both merged, date-period `{startDate, endDate}` (date structs), a date-time that names a
period `{startDateTime, endDateTime}`, duration `{amount, unit}` with CX's unit names (`s min h day wk mo yr`),
person `{name}`.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from datetime import date, datetime, timedelta
from typing import Any

DATE_FAMILY = {"date", "time", "date-time", "date-period", "duration", "person"}

_EN_NUM = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_EN_NUM.update({"a": 1, "an": 1, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "ninety": 90})
_EN_UNITS = {"second": "s", "sec": "s", "minute": "min", "min": "min", "hour": "h", "hr": "h", "day": "day",
             "week": "wk", "month": "mo", "year": "yr"}
_JA_UNITS = {"秒": "s", "分": "min", "分間": "min", "時間": "h", "日": "day", "日間": "day", "週": "wk", "週間": "wk",
             "か月": "mo", "ヶ月": "mo", "ケ月": "mo", "カ月": "mo", "ヵ月": "mo", "ヵ月間": "mo", "か月間": "mo",
             "ヶ月間": "mo", "年": "yr", "年間": "yr"}
_JA_WEEKDAYS = "月火水木金土日"
_EN_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_EN_MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m and m.lower() != "may"})


def _d(day: date) -> dict:
    return {"year": day.year, "month": day.month, "day": day.day}


def _t(hours: int, minutes: int = 0, seconds: int = 0) -> dict:
    return {"hours": hours, "minutes": minutes, "seconds": seconds, "nanos": 0}


def _period(start: date, end: date) -> dict:
    return {"startDate": _d(start), "endDate": _d(end)}


def _month_period(year: int, month: int) -> dict:
    return _period(date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))


def _week_period(day: date) -> dict:
    monday = day - timedelta(days=day.weekday())
    return _period(monday, monday + timedelta(days=6))


def _add_months(day: date, n: int) -> date:
    m = day.month - 1 + n
    return date(day.year + m // 12, m % 12 + 1, 1)


def _prepare(text: str) -> str:
    from simulator.nlu import _kanji_to_digits  # one numeral reader for the whole NLU

    return _kanji_to_digits(unicodedata.normalize("NFKC", text or "")).strip()


# ------------------------------------------------------------------------------------------ Japanese

_JA_TIME = re.compile(r"(午前|午後|朝|夜|夕方)?\s*(\d{1,2})\s*時\s*(?!間)(?:(半)|(\d{1,2})\s*分)?")
_JA_DATE = re.compile(r"(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月\s*(\d{1,2})\s*日(?!間)")
_JA_REL_DAY = {"今日": 0, "本日": 0, "きょう": 0, "明日": 1, "あした": 1, "あす": 1, "明後日": 2, "あさって": 2,
               "昨日": -1, "きのう": -1}
_JA_WEEKDAY = re.compile(r"(再来週|来週|今週|先週)?\s*の?\s*([月火水木金土日])曜日?")
_JA_MONTH = re.compile(r"(?:(\d{4})\s*年\s*)?(\d{1,2})\s*月(?!\s*\d{1,2}\s*日)(?!間)")
_JA_REL_PERIOD = {"来月": ("month", 1), "今月": ("month", 0), "先月": ("month", -1), "再来月": ("month", 2),
                  "来週": ("week", 1), "今週": ("week", 0), "先週": ("week", -1), "再来週": ("week", 2),
                  "来年": ("year", 1), "今年": ("year", 0), "去年": ("year", -1)}
_JA_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ヵ月間|か月間|ヶ月間|分間|日間|週間|年間|時間|秒|か月|ヶ月|ケ月|カ月|ヵ月|週|日|年|分)")
_JA_PERSON = re.compile(r"(?:名前は|氏名は)?\s*([^\s、。,は]{1,12}?)\s*(?:です|と申します|といいます|と言います)")


def _ja_date(text: str, now: datetime) -> tuple[date, str] | None:
    m = _JA_DATE.search(text)
    if m:
        year = int(m.group(1)) if m.group(1) else now.year
        day = date(year, int(m.group(2)), int(m.group(3)))
        if not m.group(1) and day < now.date():
            day = date(year + 1, day.month, day.day)  # "12月1日" said on 12月2日 means next year's, as CX prefers
        return day, m.group(0)
    for word in sorted(_JA_REL_DAY, key=len, reverse=True):
        if word in text:
            return now.date() + timedelta(days=_JA_REL_DAY[word]), word
    m = _JA_WEEKDAY.search(text)
    if m:
        week = {"再来週": 2, "来週": 1, "今週": 0, "先週": -1}.get(m.group(1) or "", None)
        target = _JA_WEEKDAYS.index(m.group(2))
        if week is None:
            ahead = (target - now.weekday()) % 7
            return now.date() + timedelta(days=ahead), m.group(0)
        monday = now.date() - timedelta(days=now.weekday()) + timedelta(weeks=week)
        return monday + timedelta(days=target), m.group(0)
    return None


def _ja_time(text: str) -> tuple[dict, str] | None:
    m = _JA_TIME.search(text)
    if not m:
        return None
    hours = int(m.group(2))
    minutes = 30 if m.group(3) else int(m.group(4) or 0)
    if m.group(1) in ("午後", "夜", "夕方") and hours < 12:
        hours += 12
    if hours > 24 or minutes > 59:
        return None
    return _t(hours % 24, minutes), m.group(0)


def _ja_period(text: str, now: datetime) -> tuple[dict, str] | None:
    for word in sorted(_JA_REL_PERIOD, key=len, reverse=True):
        if word in text and not _JA_WEEKDAY.search(text):
            kind, n = _JA_REL_PERIOD[word]
            if kind == "month":
                first = _add_months(now.date(), n)
                return _month_period(first.year, first.month), word
            if kind == "week":
                return _week_period(now.date() + timedelta(weeks=n)), word
            return _period(date(now.year + n, 1, 1), date(now.year + n, 12, 31)), word
    m = _JA_MONTH.search(text)
    if m and 1 <= int(m.group(2)) <= 12:
        month = int(m.group(2))
        year = int(m.group(1)) if m.group(1) else now.year + (1 if month < now.month else 0)
        return _month_period(year, month), m.group(0)
    return None


# ------------------------------------------------------------------------------------------- English

_EN_DURATION = re.compile(
    r"\b(\d+(?:\.\d+)?|" + "|".join(sorted(_EN_NUM, key=len, reverse=True)) + r"|half an?)\s*-?\s*"
    r"(seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?)\b", re.IGNORECASE)
_EN_REL_PERIOD = re.compile(r"\b(next|this|last|coming)\s+(week|month|year|weekend)\b", re.IGNORECASE)
_EN_MONTH_PERIOD = re.compile(r"\b(?:(next|this|last)\s+)?(" + "|".join(sorted(
    _EN_MONTHS, key=len, reverse=True)) + r")\b(?!\s+\d)(?:\s+(\d{4}))?", re.IGNORECASE)
_EN_PERSON = re.compile(r"\b(?:my name is|my name's|i am|i'm|this is|call me|name is)\s+"
                        r"([A-Z][\w'\-]*(?:\s+[A-Z][\w'\-]*){0,2})")
_EN_FALSE_DATES = {"may", "march", "sun", "sat", "mon", "second", "now", "a", "an", "the"}


def _en_search(text: str, now: datetime):
    """dateparser's best match in `text` as (datetime, period, matched text), or None."""
    from dateparser.date import DateDataParser
    from dateparser.search import search_dates

    settings = {"RELATIVE_BASE": now.replace(tzinfo=None), "PREFER_DATES_FROM": "future",
                "RETURN_TIME_AS_PERIOD": True}
    found = search_dates(text, languages=["en"], settings=settings) or []
    found = [(s, d) for s, d in found if s.strip().lower() not in _EN_FALSE_DATES and not s.strip().isdigit()]
    parser = DateDataParser(languages=["en"], settings=settings)
    if not found:
        # search_dates misses a bare "9am" or "3pm" that the whole-text parser reads
        data = parser.get_date_data(text) if not text.strip().isdigit() else None
        return (data.date_obj, data.period or "day", text) if data and data.date_obj else None
    matched, when = max(found, key=lambda f: len(f[0]))
    return when, parser.get_date_data(matched).period or "day", matched


def _en_period(text: str, now: datetime) -> tuple[dict, str] | None:
    m = _EN_REL_PERIOD.search(text)
    if m:
        n = {"next": 1, "coming": 1, "this": 0, "last": -1}[m.group(1).lower()]
        kind = m.group(2).lower()
        if kind == "month":
            first = _add_months(now.date(), n)
            return _month_period(first.year, first.month), m.group(0)
        if kind == "year":
            return _period(date(now.year + n, 1, 1), date(now.year + n, 12, 31)), m.group(0)
        monday = now.date() - timedelta(days=now.weekday()) + timedelta(weeks=n)
        if kind == "weekend":
            return _period(monday + timedelta(days=5), monday + timedelta(days=6)), m.group(0)
        return _period(monday, monday + timedelta(days=6)), m.group(0)
    m = _EN_MONTH_PERIOD.search(text)
    if m and not (m.group(2).lower() == "may" and not m.group(1) and not m.group(3)):
        month = _EN_MONTHS[m.group(2).lower()]
        if m.group(3):
            year = int(m.group(3))
        else:
            year = now.year + (1 if month < now.month or (m.group(1) or "").lower() == "next" else 0)
        return _month_period(year, month), m.group(0)
    return None


# -------------------------------------------------------------------------------------------- public


def extract(name: str, text: str, language: str, now: datetime) -> tuple[Any, str] | None:
    """The first `@sys.<name>` value in `text` as (CX value, original text), or None when there is none."""
    prepared = _prepare(text)
    if not prepared:
        return None
    ja = language.lower().startswith("ja")
    if name == "duration":
        return _duration(prepared, ja)
    if name == "person":
        m = (_JA_PERSON if ja else _EN_PERSON).search(prepared)
        return ({"name": m.group(1)}, m.group(1)) if m else None
    if name == "date-period":
        got = _ja_period(prepared, now) if ja else _en_period(prepared, now)
        if got:
            return got
        day = _date(prepared, ja, now)
        return (_period(day[0], day[0]), day[1]) if day else None
    if name == "date":
        day = _date(prepared, ja, now)
        return (_d(day[0]), day[1]) if day else None
    if name == "time":
        return _time(prepared, ja, now)
    if name == "date-time":
        day, clock = _date(prepared, ja, now), _time(prepared, ja, now)
        if day and clock:
            return {**_d(day[0]), **clock[0]}, prepared[_span(prepared, day[1], clock[1])]
        if clock:
            return {**_d(now.date()), **clock[0]}, clock[1]
        period = _ja_period(prepared, now) if ja else _en_period(prepared, now)
        if period:
            p = period[0]
            return {"startDateTime": {**p["startDate"], **_t(0)},
                    "endDateTime": {**p["endDate"], **_t(23, 59, 59)}}, period[1]
        return (_d(day[0]), day[1]) if day else None
    raise ValueError(f"not a date-family entity: {name}")


def _span(text: str, a: str, b: str) -> slice:
    i, j = text.find(a), text.find(b)
    return slice(min(i, j), max(i + len(a), j + len(b)))


def _date(text: str, ja: bool, now: datetime) -> tuple[date, str] | None:
    if ja:
        got = _ja_date(text, now)
        if got:
            return got
        if _JA_TIME.search(text) or _JA_DURATION.search(text):
            return None  # dateparser would read "3時" or "2時間" as a date
    found = _en_search(text, now) if not ja else _ja_fallback(text, now)
    if found and found[1] in ("day", "week", "time"):
        if found[1] == "time" and _time_only(found[2], now, "ja" if ja else "en"):
            return None
        return found[0].date(), found[2]
    return None


def _time_only(matched: str, now: datetime, language: str) -> bool:
    """Whether dateparser's match names only a clock time (so it says nothing about the day)."""
    from dateparser.date import DateDataParser

    base = datetime(2000, 1, 1)
    data = DateDataParser(languages=[language], settings={"RELATIVE_BASE": base}).get_date_data(matched)
    return data.date_obj is not None and data.date_obj.date() == date(2000, 1, 1)


def _time(text: str, ja: bool, now: datetime) -> tuple[dict, str] | None:
    if ja:
        return _ja_time(text)
    found = _en_search(text, now)
    if found and found[1] == "time":
        when = found[0]
        return _t(when.hour, when.minute, when.second), found[2]
    return None


def _ja_fallback(text: str, now: datetime):
    from dateparser.date import DateDataParser
    from dateparser.search import search_dates

    settings = {"RELATIVE_BASE": now.replace(tzinfo=None), "PREFER_DATES_FROM": "future",
                "RETURN_TIME_AS_PERIOD": True}
    found = search_dates(text, languages=["ja"], settings=settings) or []
    found = [(s, d) for s, d in found if not s.strip().isdigit()]
    if not found:
        return None
    matched, when = max(found, key=lambda f: len(f[0]))
    return when, DateDataParser(languages=["ja"], settings=settings).get_date_data(matched).period or "day", matched


def _duration(text: str, ja: bool) -> tuple[dict, str] | None:
    if ja:
        m = _JA_DURATION.search(text)
        if not m or (m.group(2) in ("分", "日", "年") and re.search(r"(時|月)\s*$", text[: m.start()])):
            return None  # "3時15分", "12月3日" are a time and a date
        amount, unit = float(m.group(1)), _JA_UNITS[m.group(2)]
        return {"amount": amount, "unit": unit}, m.group(0)
    m = _EN_DURATION.search(text)
    if not m:
        return None
    word = m.group(1).lower()
    amount = 0.5 if word.startswith("half") else float(_EN_NUM[word]) if word in _EN_NUM else float(word)
    unit = m.group(2).lower().rstrip("s")
    return {"amount": amount, "unit": _EN_UNITS[unit if unit in _EN_UNITS else unit[:3]]}, m.group(0)
