"""Slack Connect: whether a message's sender belongs to the organisation that installed the bot.

A knowledge base belongs to its workspace (and, in Enterprise Grid, to that workspace's
organisation). People of another organisation in a shared channel or DM must not read it through
the bot, nor add to it. Members of this Grid organisation's other workspaces are at home.
"""

from __future__ import annotations

import structlog
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.translate import Origin

log = structlog.get_logger(__name__)


class Organisation:
    """Another workspace is at home only when `team.info` (cached) says it is in this Grid org."""

    def __init__(self, *, client: AsyncWebClient, max_cached: int = 1000) -> None:
        self._client = client
        self._max_cached = max_cached
        self._orgs: dict[str, str | None] = {}  # workspace → its Grid organisation (None: in none)

    async def includes(self, origin: Origin) -> bool:
        for team in origin.teams:
            if not await self._includes_team(team, origin):
                return False
        return True

    async def _includes_team(self, team: str, origin: Origin) -> bool:
        if team.startswith("E") or origin.enterprise is None:
            return False  # another organisation, or another workspace while this one is in no org
        # Asked even where the event says the channel is not shared outside the organisation: the
        # flag is missing from DMs and other event shapes, and its absence proves nothing.
        return await self._organisation_of(team) == origin.enterprise

    async def _organisation_of(self, team: str) -> str | None:
        if team in self._orgs:
            return self._orgs[team]
        try:
            response = await self._client.team_info(team=team)
        except Exception as exc:  # unknown means outside: the sender is refused, and told why
            log.warning("slack_team_info_failed", team=team, error=f"{type(exc).__name__}: {exc}"[:200])
            return None
        found = (response.get("team") or {}).get("enterprise_id")
        if len(self._orgs) >= self._max_cached:
            del self._orgs[next(iter(self._orgs))]
        self._orgs[team] = str(found) if found else None
        return self._orgs[team]
