"""Teams on our aiohttp app: botbuilder's CloudAdapter behind `POST /api/messages`.

The route authenticates the request (`auth.GuardedAuthentication`), hands the raw activity to
`translate`, and does what it says: a message goes to the dispatcher (which shows typing and submits the
job), an unreadable attachment or the bot joining gets a reply at once, 👍/👎 is recorded.

Without MICROSOFT_APP_ID nothing is authenticated: that is for the Bot Framework Emulator on this
machine, so activities are then accepted only when their serviceUrl is a loopback address — an open
endpoint must not send a knowledge base's answers to whatever server a stranger names.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import structlog
from aiohttp import web
from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
    ConfigurationServiceClientCredentialFactory,
)
from botbuilder.schema import Activity, ActivityTypes

from bot.compose import ChatApp
from bot.core import text
from bot.core.feedback import FeedbackVote
from bot.core.model import Reply
from bot.core.ports import FileFetcher, ReplySender
from bot.settings import DEFAULT_TEAMS_FILE_HOSTS, Settings
from bot.teams.auth import DEFAULT_LOGIN_URL, AuthUnavailable, ClientSecretCredentials, GuardedAuthentication
from bot.teams.files import FileHosts, TeamsFileFetcher
from bot.teams.request import read_activity
from bot.teams.sender import TeamsSender
from bot.teams.translate import BotAdded, Feedback, Message, Notice, translate

log = structlog.get_logger(__name__)

ROUTE = "/api/messages"
AUTH_TIMEOUT_S = 10.0  # Teams gives a bot about 15 s to answer a request
CARD_ACTION = "adaptiveCard/action"
ERROR_TYPE = "application/vnd.microsoft.error"
_TRUSTED_CHANNELS = frozenset({"msteams"})
_TRUSTED_CHANNELS_UNAUTHENTICATED = frozenset({"msteams", "emulator"})  # the Emulator on this machine


class TeamsPlatform:
    name = "teams"

    def __init__(
        self,
        *,
        app_id: str | None,
        app_password: str | None,
        app_type: str = "MultiTenant",
        tenant_id: str | None = None,
        login_url: str = DEFAULT_LOGIN_URL,
        auth_timeout: float = AUTH_TIMEOUT_S,
        file_hosts: Sequence[str] = DEFAULT_TEAMS_FILE_HOSTS,
    ) -> None:
        self.authenticated = bool(app_id)
        self._credentials = ClientSecretCredentials(
            app_id=app_id,
            password=app_password,
            tenant_id=tenant_id if app_type == "SingleTenant" else None,
            login_url=login_url,
        )
        factory: Any = self._credentials
        if app_type == "UserAssignedMSI":
            # A managed identity has no secret; botbuilder's factory gets its token (MSAL, blocking).
            config = SimpleNamespace(APP_ID=app_id, APP_TYPE=app_type, APP_TENANTID=tenant_id)
            factory = ConfigurationServiceClientCredentialFactory(config)
        inner = ConfigurationBotFrameworkAuthentication(SimpleNamespace(), credentials_factory=factory)
        self._auth = GuardedAuthentication(inner, enabled=self.authenticated, timeout=auth_timeout)
        self.adapter = CloudAdapter(self._auth)
        self._fetcher = TeamsFileFetcher(hosts=FileHosts.parse(file_hosts))
        self.sender: ReplySender = TeamsSender(self.adapter, app_id=app_id)
        self.fetcher: FileFetcher = self._fetcher

    @classmethod
    def from_settings(cls, settings: Settings) -> TeamsPlatform:
        return cls(
            app_id=settings.microsoft_app_id,
            app_password=settings.microsoft_app_password,
            app_type=settings.microsoft_app_type,
            tenant_id=settings.microsoft_app_tenant_id,
            file_hosts=settings.teams_file_hosts,
        )

    def mount(self, app: web.Application, chat: ChatApp) -> None:
        async def messages(request: web.Request) -> web.Response:
            return await self._handle(request, chat)

        async def close(_: web.Application) -> None:
            await self.close()

        app.router.add_post(ROUTE, messages)
        app.on_cleanup.append(close)
        if not self.authenticated:
            log.warning("teams_unauthenticated", route=ROUTE, accepts="loopback serviceUrl only (Emulator)")

    async def start_outbound(self) -> None:
        """Only reply and fetch (a queue worker): every reply goes through the adapter, nothing to open."""

    async def close(self) -> None:
        await self._fetcher.close()
        await self._credentials.close()
        self._auth.close()

    # -- one request ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request, chat: ChatApp) -> web.Response:
        header = request.headers.get("Authorization", "")
        try:
            self._auth.check_header(header)  # before the body is read: strangers' bodies are not parsed
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
            auth = await self._auth.authenticate_request(activity, header)
        except PermissionError as exc:
            return _refuse(401, "teams_unauthorized", str(exc))
        except AuthUnavailable as exc:
            log.error("teams_auth_unavailable", reason=str(exc))
            return _error(503, "authentication is unavailable; try again")

        async def turn(ctx: TurnContext) -> None:
            await self._on_turn(ctx, body, chat)

        try:
            invoke: InvokeResponse | None = await self.adapter.process_activity(auth, activity, turn)
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

    async def _on_turn(self, ctx: TurnContext, raw: dict[str, Any], chat: ChatApp) -> None:
        event = translate(raw)
        if isinstance(event, Message):
            incoming = event.incoming
            follow_up = event.kind == "channel" and await chat.memory.known(incoming.thread)
            if event.addressed or follow_up:
                await chat.dispatcher.handle(incoming)
        elif isinstance(event, Notice):
            await self.sender.finish(event.address, {}, Reply(event.text))
        elif isinstance(event, BotAdded):
            await self.sender.finish(event.address, {}, Reply(text.TEAMS_WELCOME))
        elif isinstance(event, Feedback):
            vote = FeedbackVote(self.name, event.workspace, event.user, event.vote, event.ref)
            await chat.feedback.record(vote)
            await self._thank(ctx, event)
        elif raw.get("type") == "invoke" and raw.get("name") == CARD_ACTION:
            # Our cards' only action is feedback: anything else from a card is a malformed request (other
            # invokes stay botbuilder's 501, "not implemented").
            error = {"code": "BadRequest", "message": text.TEAMS_CARD_ACTION_UNKNOWN}
            await _invoke_response(ctx, 400, {"statusCode": 400, "type": ERROR_TYPE, "value": error})

    async def _thank(self, ctx: TurnContext, event: Feedback) -> None:
        if not event.invoke:  # a message-back from Action.Submit: say thanks in the thread
            await ctx.send_activity(text.FEEDBACK_THANKS)
            return
        # Action.Execute: the HTTP response is the answer; Teams shows the message under the card.
        body = {
            "statusCode": 200,
            "type": "application/vnd.microsoft.activity.message",
            "value": text.FEEDBACK_THANKS,
        }
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
