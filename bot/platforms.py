"""The chat platforms threadwise serves: one line each, with the setting that enables it.

`threadwise serve` mounts the enabled ones, `threadwise worker` opens their outbound parts, and
`threadwise check` runs every platform's checks. A package is imported only when it is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.platform import Platform
from bot.settings import Settings


@dataclass(frozen=True)
class Row:
    module: str  # whose `PLATFORM` is a bot.platform.Platform
    enabled: Callable[[Settings], bool]

    def platform(self) -> Platform[Any]:
        found = importlib.import_module(self.module).PLATFORM
        if not isinstance(found, Platform):
            raise TypeError(f"{self.module}.PLATFORM is not a bot.platform.Platform")
        return found


PLATFORMS: tuple[Row, ...] = (
    Row("bot.slack.platform", lambda s: bool(s.slack_bot_token)),  # SLACK_BOT_TOKEN
    Row("bot.teams.platform", lambda s: s.teams_enabled),  # MICROSOFT_APP_ID; the Emulator outside production
)


def enabled_platforms(settings: Settings, table: Sequence[Row] = PLATFORMS) -> list[Platform[Any]]:
    return [row.platform() for row in table if row.enabled(settings)]


def all_platforms(table: Sequence[Row] = PLATFORMS) -> list[Platform[Any]]:
    return [row.platform() for row in table]
