"""Slack as the platform table sees it: Events API (HTTP or Socket Mode) in, the Web API out."""

from bot.platform import Platform
from bot.slack.check import checks, describe
from bot.slack.outbound import SlackOutbound
from bot.slack.routes import SlackRoutes

PLATFORM = Platform(
    name="slack",
    outbound=SlackOutbound.from_settings,
    inbound=SlackRoutes.from_settings,
    describe=describe,
    checks=checks,
)
