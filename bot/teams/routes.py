"""Teams' inbound part on our aiohttp app: botbuilder's CloudAdapter behind `POST /api/messages`.

The route authenticates the request (`auth.GuardedAuthentication`), hands the raw activity to
`translate`, and does what it says: a message goes to `submit` (the dispatcher, which shows typing and
submits the job), an unreadable attachment or the bot joining gets a reply at once, 👍/👎 (Teams'
feedback loop, or the buttons of our card in the Emulator and on older answers) goes to `feedback`.
A click on the card under a personal-chat upload (who may ask about it) goes to `submit` too, and its
invoke is answered at once; the job's reply replaces the card.

Without MICROSOFT_APP_ID nothing is authenticated: that is for the Bot Framework Emulator on this
machine, so activities are then accepted only when their serviceUrl is a loopback address — an open
endpoint must not send a knowledge base's answers to whatever server a stranger names.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlparse

import structlog
from aiohttp import web
from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.schema import Activity, ActivityTypes

from bot.core import text
from bot.core.feedback import FeedbackVote
from bot.core.model import Reply
from bot.platform import Intake
from bot.settings import Settings
from bot.teams import text as teams_text
from bot.teams.auth import AuthUnavailable
from bot.teams.outbound import TeamsOutbound
from bot.teams.request import read_activity
from bot.teams.translate import BotAdded, Choice, Feedback, Message, Notice, Rejected, translate

log = structlog.get_logger(__name__)

ROUTE = "/api/messages"
CARD_ACTION = "adaptiveCard/action"
ERROR_TYPE = "application/vnd.microsoft.error"
MESSAGE_TYPE = "application/vnd.microsoft.activity.message"  # an Action.Execute answered with a text
_TRUSTED_CHANNELS = frozenset({"msteams"})
_TRUSTED_CHANNELS_UNAUTHENTICATED = frozenset({"msteams", "emulator"})  # the Emulator on this machine


class TeamsRoutes:
    def __init__(self, outbound: TeamsOutbound, intake: Intake) -> None:
        self._outbound = outbound
        self._intake = intake
        self.authenticated = outbound.authenticated

    @classmethod
    def from_settings(cls, settings: Settings, outbound: TeamsOutbound, intake: Intake) -> TeamsRoutes:
        return cls(outbound, intake)

    def mount(self, app: web.Application) -> None:
        app.router.add_post(ROUTE, self._handle)
        if not self.authenticated:
            log.warning("teams_unauthenticated", route=ROUTE, accepts="loopback serviceUrl only (Emulator)")

    async def drain(self) -> None:
        """Each activity is handed on within its request: only the jobs are left."""
        await self._intake.drain()

    # -- one request ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        try:
            # Before the body is read: strangers' bodies are not parsed.
            self._outbound.auth.check_header(header)
        except PermissionError as exc:
            return _refuse(401, "teams_unauthorized", str(exc))
        parsed = await read_activity(request)
        if isinstance(parsed, web.Response):
            return parsed
        body, activity = parsed
        refused = self._refuse_untrusted(activity)
        if refused is not None:
            return refused
        try:
            auth = await self._outbound.auth.authenticate_request(activity, header)
        except PermissionError as exc:
            return _refuse(401, "teams_unauthorized", str(exc))
        except AuthUnavailable as exc:
            log.error("teams_auth_unavailable", reason=str(exc))
            return _error(503, "authentication is unavailable; try again")

        async def turn(ctx: TurnContext) -> None:
            await self._on_turn(ctx, body)

        try:
            adapter = self._outbound.adapter
            invoke: InvokeResponse | None = await adapter.process_activity(auth, activity, turn)
        except Exception:  # e.g. the Bot Connector or Entra unreachable: nothing reached the user
            log.exception("teams_turn_failed", activity_type=activity.type)
            return _error(500, "the bot failed to handle this activity")
        if invoke is not None:
            return web.json_response(invoke.body, status=invoke.status)
        return web.Response(status=200)

    def _refuse_untrusted(self, activity: Activity) -> web.Response | None:
        """403 for a channel that cannot vouch for a tenant, or (no app id) a remote serviceUrl.

        Only Teams puts the tenant and the user's Entra id into an activity itself; Web Chat, Direct Line
        and the rest are signed with the same Bot Framework keys but carry whatever their client wrote
        there. This runs before anything reads a tenant, user or admin id from the activity.
        """
        trusted = _TRUSTED_CHANNELS if self.authenticated else _TRUSTED_CHANNELS_UNAUTHENTICATED
        if activity.channel_id not in trusted:
            return _refuse(403, "teams_refused_channel", f"channelId {str(activity.channel_id)[:40]!r}")
        if not self.authenticated and not _is_loopback(activity.service_url):
            log.warning("teams_refused_remote_service_url", reason="no MICROSOFT_APP_ID")
            return _error(403, "set MICROSOFT_APP_ID to accept activities from Teams")
        return None

    async def _on_turn(self, ctx: TurnContext, raw: dict[str, Any]) -> None:
        event = translate(raw)
        sender = self._outbound.sender
        if isinstance(event, Message):
            await self._intake.submit(event.incoming)
        elif isinstance(event, Notice):
            await sender.finish(event.address, None, Reply(event.text))
        elif isinstance(event, BotAdded):
            await sender.finish(event.address, None, Reply(teams_text.WELCOME))
        elif isinstance(event, Feedback):
            vote = FeedbackVote(
                self._outbound.name, event.workspace, event.user, event.vote, event.ref, comment=event.comment
            )
            await self._intake.feedback(vote)
            await self._thank(ctx, event)
        elif isinstance(event, Choice):
            await self._intake.submit(event.incoming)
            # Teams waits for this response (it shows a spinner on the card): answer now, and let the
            # job's reply replace the card when the documents' scope has changed.
            body = {"statusCode": 200, "type": MESSAGE_TYPE, "value": teams_text.SCOPE_CHOICE_TAKEN}
            await _invoke_response(ctx, 200, body)
        elif isinstance(event, Rejected):
            log.info("teams_invoke_rejected", name=raw.get("name"), reason=event.reason)
            error = {"code": "BadRequest", "message": event.reason}
            if raw.get("name") == CARD_ACTION:  # Universal Actions' error shape
                await _invoke_response(ctx, 400, {"statusCode": 400, "type": ERROR_TYPE, "value": error})
            else:
                await _invoke_response(ctx, 400, {"error": error})
        elif raw.get("type") == "invoke" and raw.get("name") == CARD_ACTION:
            # Our cards' actions are feedback and an upload's scope: anything else from a card is a
            # malformed request (other invokes stay botbuilder's 501, "not implemented").
            error = {"code": "BadRequest", "message": teams_text.CARD_ACTION_UNKNOWN}
            await _invoke_response(ctx, 400, {"statusCode": 400, "type": ERROR_TYPE, "value": error})

    async def _thank(self, ctx: TurnContext, event: Feedback) -> None:
        if event.loop:  # Teams' feedback loop wants an empty 200 (anything else: its 400)
            await _invoke_response(ctx, 200, {})
            return
        if not event.invoke:  # a message-back from Action.Submit: say thanks in the thread
            await ctx.send_activity(text.FEEDBACK_THANKS)
            return
        # Action.Execute: the HTTP response is the answer; Teams shows the message under the card.
        body = {"statusCode": 200, "type": MESSAGE_TYPE, "value": text.FEEDBACK_THANKS}
        await _invoke_response(ctx, 200, body)


async def _invoke_response(ctx: TurnContext, status: int, body: dict[str, Any]) -> None:
    response = InvokeResponse(status=status, body=body)
    await ctx.send_activity(Activity(type=ActivityTypes.invoke_response, value=response))


def _is_loopback(url: str | None) -> bool:
    host = urlparse(url or "").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _refuse(status: int, event: str, reason: str) -> web.Response:
    log.info(event, reason=reason)
    return _error(status, "unauthorized" if status == 401 else "this channel is not accepted")
