"""Slack on `threadwise serve`: HTTP events at POST /slack/events, or Socket Mode with SLACK_APP_TOKEN.

The platform owns the work Bolt would otherwise leave in untracked tasks: each accepted payload
becomes one tracked task (translate → dispatcher), and shutdown waits for them and for the jobs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Coroutine
from typing import Any, Literal

import aiohttp
import structlog
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.compose import ChatApp
from bot.core import text
from bot.core.feedback import FeedbackVote
from bot.core.model import FileRef, Incoming, Reply
from bot.core.ports import FileFetcher, ReplySender
from bot.core.state import Deduplicator, MemoryDeduplicator
from bot.settings import Settings
from bot.slack.app import Body, build_bolt_app
from bot.slack.connect import Organisation
from bot.slack.files import SlackFileFetcher
from bot.slack.inbound import BadRequest, parse_payload, signature_problem
from bot.slack.sender import SlackSender
from bot.slack.translate import (
    PLATFORM,
    AssistantThread,
    BotIdentity,
    Feedback,
    Intake,
    assistant_thread_from_event,
    command_from_form,
    feedback_from_action,
    message_from_event,
)
from rag.errors import ConfigError

log = structlog.get_logger(__name__)

EVENTS_PATH = "/slack/events"
AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}


class SlackPlatform:
    """The `Platform` for Slack: sender, fetcher, and the Bolt app mounted on the aiohttp service."""

    name = PLATFORM

    def __init__(
        self,
        *,
        bot_token: str,
        signing_secret: str | None,
        app_token: str | None,
        api_url: str,
        follow_ups: bool = True,
        dedup: Deduplicator | None = None,
        rate_limit_retries: int = 3,
        http_timeout_s: int = 30,
    ) -> None:
        if not app_token and not signing_secret:
            raise ConfigError(
                "Slack HTTP mode needs SLACK_SIGNING_SECRET (Slack app > Basic Information), "
                "or set SLACK_APP_TOKEN (xapp-…) to use Socket Mode"
            )
        self._bot_token = bot_token
        self._signing_secret = signing_secret or ""
        self._app_token = app_token or None
        self._follow_ups = follow_ups
        self._dedup = dedup or MemoryDeduplicator()
        self._client = AsyncWebClient(
            base_url=api_url,
            timeout=http_timeout_s,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(max_retry_count=2),
                AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries),  # waits Retry-After
                AsyncServerErrorRetryHandler(max_retry_count=1),
            ],
        )
        self._files = SlackFileFetcher(token=bot_token, client=self._client, api_url=api_url)
        self._organisation = Organisation(client=self._client)
        self.sender: ReplySender = SlackSender(client=self._client)
        self.fetcher: FileFetcher = self._files
        self._identity: BotIdentity | None = None
        self._identity_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._chat: ChatApp | None = None
        self._bolt: AsyncApp | None = None
        self._socket: AsyncSocketModeHandler | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackPlatform:
        if not settings.slack_bot_token:
            raise ConfigError("Slack needs SLACK_BOT_TOKEN (xoxb-…, Slack app > OAuth & Permissions)")
        return cls(
            bot_token=settings.slack_bot_token,
            signing_secret=settings.slack_signing_secret,
            app_token=settings.slack_app_token,
            api_url=settings.slack_api_url,
            follow_ups=settings.slack_thread_follow_ups,
        )

    @property
    def mode(self) -> Literal["socket", "http"]:
        return "socket" if self._app_token else "http"

    def mount(self, app: web.Application, chat: ChatApp) -> None:
        self._chat = chat
        self._bolt = build_bolt_app(
            client=self._client,
            signing_secret=self._signing_secret,
            authorize=self._authorize,
            dedup=self._dedup,
            listeners=self,
        )
        # Bolt got the client without a token, so it asks `authorize` (our cached auth.test) instead of
        # calling auth.test inside the first request; the shared client needs the token for our calls.
        self._client.token = self._bot_token
        if self.mode == "http":
            app.router.add_post(EVENTS_PATH, self._http)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)
        app.on_cleanup.append(self._close)

    async def drain(self) -> None:
        """Wait until every accepted payload has been dispatched and every job has replied."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._chat is not None:
            await self._chat.runner.drain()

    # -- lifecycle -----------------------------------------------------------------------------------

    async def _start(self, _: web.Application) -> None:
        # One connection pool for every Web API call (Bolt's per-request clients share it too).
        session = self._client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        try:
            await self._bot()
        except ConfigError:
            await session.close()  # start-up stops here: no cleanup hook will run
            raise
        except Exception as exc:  # Slack unreachable now: `authorize` asks again on the first event
            log.warning("slack_auth_test_failed", error=f"{type(exc).__name__}: {exc}"[:200])
        if self._app_token:
            assert self._bolt is not None
            self._socket = AsyncSocketModeHandler(self._bolt, self._app_token, web_client=self._client)
            await self._socket.connect_async()
        identity = self._identity
        log.info("slack_ready", mode=self.mode, bot_user=identity and identity.user_id)

    async def _stop(self, _: web.Application) -> None:
        if self._socket is not None:
            await self._socket.close_async()  # take no new events, then finish what was accepted
        await self.drain()

    async def _close(self, _: web.Application) -> None:
        await self.drain()  # a request still in flight at shutdown may have started work since
        await self.close()

    async def start_outbound(self) -> None:
        """Only reply and fetch, with no routes and no Bolt app: a queue worker's use of Slack."""
        self._client.token = self._bot_token
        self._client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))

    async def close(self) -> None:
        await self._files.close()
        if self._client.session is not None:
            await self._client.session.close()

    async def _http(self, request: web.Request) -> web.Response:
        """Verify, parse and check the request before Bolt reads it: Bolt raised (and the service
        answered 500 with a traceback) on headers and bodies no one but an attacker sends."""
        assert self._bolt is not None
        raw = await request.read()
        problem = signature_problem(
            raw,
            timestamp=request.headers.get("X-Slack-Request-Timestamp"),
            signature=request.headers.get("X-Slack-Signature"),
            secret=self._signing_secret,
            now=time.time(),
        )
        if problem is not None:  # the body is not logged: it is whatever anyone sent
            log.warning("slack_request_refused", reason=problem)
            return web.Response(status=401)
        try:
            text, body = parse_payload(raw, request.content_type)
        except BadRequest as exc:
            log.warning("slack_bad_request", reason=str(exc))
            return web.Response(status=400)
        bolt_request = AsyncBoltRequest(body=text, query=request.query_string, headers=dict(request.headers))
        if bolt_request.body != body:  # Bolt reads a command that says "payload" as an empty payload
            bolt_request.body = body
            bolt_request.context = build_async_context(AsyncBoltContext({}), body)
        return await to_aiohttp_response(await self._bolt.async_dispatch(bolt_request))

    # -- identity --------------------------------------------------------------------------------------

    async def _bot(self) -> BotIdentity:
        async with self._identity_lock:
            if self._identity is None:
                try:
                    result = await self._client.auth_test()
                except SlackApiError as exc:
                    error = exc.response.get("error")
                    if error in AUTH_ERRORS:
                        raise ConfigError(
                            f"Slack refused SLACK_BOT_TOKEN ({error}): copy the Bot User OAuth Token "
                            "(xoxb-…) from the Slack app's OAuth & Permissions page"
                        ) from None
                    raise
                self._identity = BotIdentity(
                    user_id=str(result["user_id"]),
                    bot_id=str(result.get("bot_id") or ""),
                    team_id=str(result.get("team_id") or ""),
                )
            return self._identity

    async def _authorize(
        self, enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        bot = await self._bot()
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id or bot.team_id,
            bot_user_id=bot.user_id,
            bot_id=bot.bot_id,
            bot_token=self._bot_token,
            user_id=user_id,
        )

    # -- listeners: called inside the request, so they only translate and start a task -------------

    def on_message(self, body: Body) -> None:
        assert self._identity is not None  # `authorize` ran before any listener
        intake = message_from_event(body, self._identity)
        if intake is not None:
            self._spawn(self._intake(intake), f"slack-{intake.incoming.event_id}")

    def on_command(self, body: Body) -> None:
        incoming = command_from_form(body)
        if incoming is not None:
            self._spawn(self._intake(Intake(incoming)), f"slack-command-{incoming.event_id}")

    def on_action(self, body: Body) -> None:
        feedback = feedback_from_action(body)
        if feedback is not None:
            assert self._chat is not None
            vote = FeedbackVote(
                PLATFORM, f"slack-{feedback.team}", feedback.user, feedback.vote, ref=feedback.event_id
            )
            self._spawn(self._chat.feedback.record(vote), f"slack-vote-{feedback.message_ts}")
            self._spawn(self._thank(feedback), f"slack-feedback-{feedback.message_ts}")

    def on_assistant_thread_started(self, body: Body) -> None:
        thread = assistant_thread_from_event(body)
        if thread is not None:
            self._spawn(self._suggest(thread), f"slack-assistant-{thread.thread_ts}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the work, in tracked tasks ------------------------------------------------------------------

    async def _intake(self, intake: Intake) -> None:
        assert self._chat is not None
        msg = intake.incoming
        bound = log.bind(platform=PLATFORM, event_id=msg.event_id, workspace=msg.workspace, user=msg.user)
        try:
            if intake.origin is not None and not await self._organisation.includes(intake.origin):
                await self._refuse_outsider(intake, intake.origin.teams)
                return
            if intake.follow_up_only and not (self._follow_ups and await self._chat.memory.known(msg.thread)):
                return
            msg = await self._complete(msg)
            await self._chat.dispatcher.handle(msg)
        except Exception:
            bound.exception("slack_intake_failed")
            doing = text.DOING["ingest" if msg.files else "ask"]
            reply = Reply(text.INTERNAL_ERROR.format(doing=doing, ref=msg.event_id[:12]), kind="error")
            try:
                await self.sender.finish(msg.address, {}, reply)
            except Exception:
                bound.exception("slack_apology_failed")

    async def _refuse_outsider(self, intake: Intake, teams: tuple[str, ...]) -> None:
        """Someone of another organisation: told why, once per message (a mention arrives twice), and
        only when they wrote to the bot; their replies among people in a thread are left alone."""
        msg = intake.incoming
        log.info("slack_connect_refused", event_id=msg.event_id, user=msg.user, teams=list(teams))
        if intake.follow_up_only or not await self._dedup.first_time(f"slack-connect:{msg.message_key}"):
            return
        reply = Reply(text.SLACK_CONNECT_REFUSED, kind="error", ephemeral=True)
        await self.sender.finish(msg.address, {}, reply)

    async def _complete(self, msg: Incoming) -> Incoming:
        """Fill in what the event left out: Slack Connect files' names, an AI thread's title."""
        assert self._chat is not None
        changes: dict[str, Any] = {}
        if any(not f.name or not f.url for f in msg.files):
            changes["files"] = tuple([await self._described(f) for f in msg.files])
        if msg.address.get("assistant") and msg.text and not await self._chat.memory.known(msg.thread):
            changes["address"] = {**msg.address, "title": msg.text}
        return dataclasses.replace(msg, **changes) if changes else msg

    async def _described(self, file: FileRef) -> FileRef:
        if file.name and file.url:
            return file
        try:
            return await self._files.describe(file)
        except Exception as exc:
            log.warning("slack_file_info_failed", file_id=file.id, error=str(exc)[:200])
            return dataclasses.replace(file, name=file.name or file.id)

    async def _thank(self, feedback: Feedback) -> None:
        message = text.FEEDBACK_THANKS
        try:
            await self._client.chat_postEphemeral(
                channel=feedback.channel, user=feedback.user, thread_ts=feedback.thread_ts, text=message
            )
        except Exception:
            log.exception("slack_feedback_ack_failed", event_id=feedback.event_id)

    async def _suggest(self, thread: AssistantThread) -> None:
        prompts = [{"title": title, "message": message} for title, message in text.ASSISTANT_PROMPTS]
        try:
            await self._client.assistant_threads_setSuggestedPrompts(
                channel_id=thread.channel,
                thread_ts=thread.thread_ts,
                prompts=prompts,
                title=text.ASSISTANT_PROMPTS_TITLE,
            )
        except Exception:
            log.exception("slack_suggested_prompts_failed", thread_ts=thread.thread_ts)
