"""Cron lines (BACKUP_SCHEDULE) as APScheduler triggers, with cron's own weekday numbers.

APScheduler 3 counts weekdays from Monday = 0, where cron has Sunday = 0 (and 7). A line written for
cron would run on the wrong day, so numeric weekdays are turned into names before APScheduler sees them.
"""

from __future__ import annotations

from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
HINT = "a cron line has five fields, minute hour day-of-month month weekday, e.g. `0 2 * * *`"


def cron_trigger(line: str, *, timezone: str | None = None) -> CronTrigger:
    """A trigger for a standard five-field cron line, in `timezone` (default: the machine's).

    Raises ValueError saying what is wrong.
    """
    fields = line.split()
    if len(fields) != 5:
        raise ValueError(f"{len(fields)} field(s) given; {HINT}")
    fields[4] = _weekdays(fields[4])
    return CronTrigger.from_crontab(" ".join(fields), timezone=timezone)


def _weekdays(field: str) -> str:
    if field in ("*", "?"):
        return "*"
    days: list[str] = []
    for item in field.split(","):
        span, _, step = item.partition("/")
        if any(ch.isalpha() for ch in span):  # names mean the same day to both
            days.append(item)
            continue
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            low, high = (_day_number(part) for part in span.split("-", 1))
        else:
            low = high = _day_number(span)
            if step:
                high = 6
        every = int(step) if step.isdigit() else 1
        if low > high or every < 1 or (step and not step.isdigit()):
            raise ValueError(f"weekday {item!r} is not a weekday range; {HINT}")
        days.extend(_DAYS[d % 7] for d in range(low, high + 1, every))
    return ",".join(dict.fromkeys(days))


def _day_number(text: str) -> int:
    if not text.isdigit() or int(text) > 7:
        raise ValueError(f"weekday {text!r} is not 0-7 (0 and 7 are Sunday); {HINT}")
    return int(text)
