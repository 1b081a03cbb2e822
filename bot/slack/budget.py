"""Web API calls kept inside Slack's rate tiers, so that answers streamed at once never meet HTTP 429.

Slack limits each method per workspace and app to a number of calls a minute (its tier: Tier 2 20+,
Tier 3 50+, Tier 4 100+; docs.slack.dev/apis/web-api/rate-limits). A stream costs one chat.startStream
and, later, one chat.stopStream (both Tier 2), so a stream is only started while its stop is sure to
fit too; appends (Tier 4) and edits of a working message (Tier 3) are skipped when the minute is
spent, and the text they would have carried goes with the next one.

Counted in this process: several bot processes on one workspace share Slack's minute, and the SDK's
retry handler then waits out a 429 as it always did.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping

START, APPEND, STOP = "chat.startStream", "chat.appendStream", "chat.stopStream"
UPDATE, DELETE = "chat.update", "chat.delete"
TIERS = {START: 20, STOP: 20, APPEND: 100, UPDATE: 50, DELETE: 50}  # calls a minute: each tier's floor
WINDOW_S = 62.0  # Slack's minute, and a margin for the time a call takes to arrive
STREAM_LIFETIME_S = 330.0  # Slack ends a stream after about five minutes: it needs no stop after that


class CallBudget:
    def __init__(
        self,
        tiers: Mapping[str, int] = TIERS,
        *,
        window: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tiers = tiers
        self._window = window
        self._clock = clock
        self._spent: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._open: dict[str, dict[str, float]] = defaultdict(dict)  # team → stream ts → started

    def spare(self, team: str, method: str) -> int:
        """Calls of `method` that may be made in `team` now."""
        limit = self._tiers.get(method)
        if limit is None:
            return 1
        spent = self._spent[(team, method)]
        while spent and spent[0] <= self._clock() - self._window:
            spent.popleft()
        return limit - len(spent)

    def take(self, team: str, method: str) -> bool:
        """Spend a call of `method` if one is spare now."""
        if self.spare(team, method) <= 0:
            return False
        self._spent[(team, method)].append(self._clock())
        return True

    async def wait(self, team: str, method: str, *, at_most: float = 30.0) -> None:
        """Spend a call of `method` as soon as one is spare; after `at_most` seconds, spend it anyway
        (the SDK waits out a 429)."""
        deadline = self._clock() + at_most
        while not self.take(team, method):
            if self._clock() >= deadline:
                self._spent[(team, method)].append(self._clock())
                return
            oldest = self._spent[(team, method)][0]
            await asyncio.sleep(max(0.05, min(oldest + self._window, deadline) - self._clock()))

    def open_stream(self, team: str, key: str) -> bool:
        """Spend a chat.startStream if one is spare and the stops of the streams open then still fit;
        the stream counts as open under `key` (see `opened`) until `closed`."""
        open_now = self._open[team]
        for old, started in list(open_now.items()):
            if self._clock() - started > STREAM_LIFETIME_S:
                del open_now[old]  # its job never finished it; Slack has ended it
        if self.spare(team, STOP) <= len(open_now) or not self.take(team, START):
            return False
        open_now[key] = self._clock()
        return True

    def opened(self, team: str, key: str, ts: str) -> None:
        """The stream opened under `key` started: it is known by its `ts` from now on."""
        self._open[team][ts] = self._open[team].pop(key, self._clock())

    def closed(self, team: str, key: str) -> None:
        self._open[team].pop(key, None)
