"""Slack's inbound part on `threadwise serve`: HTTP events at POST /slack/events, or Socket Mode with
SLACK_APP_TOKEN.

It owns the work Bolt would otherwise leave in untracked tasks: each accepted payload becomes one
tracked task (translate → submit), and shutdown waits for them and for the jobs. Before a message is
submitted, what only Slack can say is asked of it: whether a sender of another workspace belongs to
this organisation (Slack Connect), and the names of files an event left out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Coroutine
from typing import Any, Literal

import structlog
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.core import text
from bot.core.feedback import FeedbackVote
from bot.core.model import FileRef, Incoming, Reply
from bot.platform import Intake
from bot.settings import Settings
from bot.slack import text as slack_text
from bot.slack.app import Body, build_bolt_app
from bot.slack.inbound import BadRequest, parse_payload, signature_problem
from bot.slack.outbound import SlackOutbound
from bot.slack.render import reason_form
from bot.slack.translate import (
    PLATFORM,
    AssistantThread,
    Feedback,
    Message,
    Refused,
    assistant_thread_from_event,
    choice_from_action,
    command_from_form,
    feedback_from_action,
    message_from_event,
    reason_from_view,
    reason_metadata,
)
from rag.errors import ConfigError

log = structlog.get_logger(__name__)

EVENTS_PATH = "/slack/events"


class SlackRoutes:
    """Bolt on the aiohttp service (or on a Socket Mode connection), handing messages to `intake`."""

    def __init__(
        self,
        outbound: SlackOutbound,
        intake: Intake,
        *,
        signing_secret: str | None,
        app_token: str | None,
        follow_ups: bool = True,
    ) -> None:
        if not app_token and not signing_secret:
            raise ConfigError(
                "Slack HTTP mode needs SLACK_SIGNING_SECRET (Slack app > Basic Information), "
                "or set SLACK_APP_TOKEN (xapp-…) to use Socket Mode"
            )
        self._outbound = outbound
        self._intake = intake
        self._signing_secret = signing_secret or ""
        self._app_token = app_token or None
        self._follow_ups = follow_ups
        self._tasks: set[asyncio.Task[None]] = set()
        self._bolt = build_bolt_app(
            client=outbound.client,
            signing_secret=self._signing_secret,
            authorize=self._authorize,
            listeners=self,
        )
        self._socket: AsyncSocketModeHandler | None = None

    @classmethod
    def from_settings(cls, settings: Settings, outbound: SlackOutbound, intake: Intake) -> SlackRoutes:
        return cls(
            outbound,
            intake,
            signing_secret=settings.slack_signing_secret,
            app_token=settings.slack_app_token,
            follow_ups=settings.slack_thread_follow_ups,
        )

    @property
    def mode(self) -> Literal["socket", "http"]:
        return "socket" if self._app_token else "http"

    def mount(self, app: web.Application) -> None:
        if self.mode == "http":
            app.router.add_post(EVENTS_PATH, self._http)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)
        app.on_cleanup.append(self._cleanup)

    async def drain(self) -> None:
        """Wait until every accepted payload has been dispatched and every job has replied."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._intake.drain()

    # -- lifecycle (the outbound part is open by now) -------------------------------------------------

    async def _start(self, _: web.Application) -> None:
        try:
            await self._outbound.identity()
        except ConfigError:
            await self._outbound.close()  # start-up stops here: no cleanup hook will run
            raise
        except Exception as exc:  # Slack unreachable now: `authorize` asks again on the first event
            log.warning("slack_auth_test_failed", error=f"{type(exc).__name__}: {exc}"[:200])
        if self._app_token:
            client = self._outbound.client
            self._socket = AsyncSocketModeHandler(self._bolt, self._app_token, web_client=client)
            await self._socket.connect_async()
        identity = self._outbound.known_identity
        log.info("slack_ready", mode=self.mode, bot_user=identity and identity.user_id)

    async def _stop(self, _: web.Application) -> None:
        if self._socket is not None:
            await self._socket.close_async()  # take no new events, then finish what was accepted
        await self.drain()

    async def _cleanup(self, _: web.Application) -> None:
        await self.drain()  # a request still in flight at shutdown may have started work since

    async def _http(self, request: web.Request) -> web.Response:
        """Verify, parse and check the request before Bolt reads it: Bolt raised (and the service
        answered 500 with a traceback) on headers and bodies no one but an attacker sends."""
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
            body_text, body = parse_payload(raw, request.content_type)
        except BadRequest as exc:
            log.warning("slack_bad_request", reason=str(exc))
            return web.Response(status=400)
        if body.get("type") != "url_verification" and self._outbound.known_identity is None:
            try:  # Bolt's authorize needs it, and answered 500 with a traceback when Slack was unreachable
                await self._outbound.identity()
            except Exception as exc:
                log.warning("slack_identity_unavailable", error=f"{type(exc).__name__}: {exc}"[:200])
                return web.Response(status=503, headers={"Retry-After": "10"})  # Slack delivers it again
        bolt_request = AsyncBoltRequest(
            body=body_text, query=request.query_string, headers=dict(request.headers)
        )
        if bolt_request.body != body:  # Bolt reads a command that says "payload" as an empty payload
            bolt_request.body = body
            bolt_request.context = build_async_context(AsyncBoltContext({}), body)
        return await to_aiohttp_response(await self._bolt.async_dispatch(bolt_request))

    async def _authorize(
        self, enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        bot = await self._outbound.identity()
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id or bot.team_id,
            bot_user_id=bot.user_id,
            bot_id=bot.bot_id,
            bot_token=self._outbound.bot_token,
            user_id=user_id,
        )

    # -- listeners: called inside the request, so they only translate and start a task -------------

    def on_message(self, body: Body) -> None:
        identity = self._outbound.known_identity
        if identity is None:  # `authorize` runs before any listener
            raise RuntimeError("a Slack listener ran before authorize")
        message = message_from_event(body, identity, follow_ups=self._follow_ups)
        if message is not None:
            self._spawn(self._submit(message), f"slack-{message.incoming.event_id}")

    def on_command(self, body: Body) -> None:
        incoming = command_from_form(body)
        if incoming is not None:
            self._spawn(self._submit(Message(incoming)), f"slack-command-{incoming.event_id}")

    def on_action(self, body: Body) -> None:
        choice = choice_from_action(body)
        if choice is not None:
            self._spawn(self._submit(Message(choice)), f"slack-choice-{choice.event_id}")
        feedback = feedback_from_action(body)
        if feedback is not None:
            vote = FeedbackVote(
                PLATFORM, f"slack-{feedback.team}", feedback.user, feedback.vote, ref=feedback.event_id
            )
            self._spawn(self._record(vote), f"slack-vote-{feedback.message_ts}")
            self._spawn(self._follow_up(feedback), f"slack-feedback-{feedback.message_ts}")

    def on_view_submission(self, body: Body) -> dict[str, str]:
        reason = reason_from_view(body)
        if isinstance(reason, Refused):
            log.warning("slack_feedback_form_refused", problem=reason.problem)
            return {reason.block: slack_text.REASON_MISSING} if reason.block else {}
        vote = FeedbackVote(
            PLATFORM,
            f"slack-{reason.team}",
            reason.user,
            "down",
            ref=reason.ref,
            reason=reason.reason,
            comment=reason.comment,
        )
        self._spawn(self._record(vote), f"slack-reason-{reason.ref}")
        return {}

    def on_assistant_thread_started(self, body: Body) -> None:
        thread = assistant_thread_from_event(body)
        if thread is not None:
            self._spawn(self._suggest(thread), f"slack-assistant-{thread.thread_ts}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the work, in tracked tasks ------------------------------------------------------------------

    async def _submit(self, message: Message) -> None:
        msg = message.incoming
        bound = log.bind(platform=PLATFORM, event_id=msg.event_id, workspace=msg.workspace, user=msg.user)
        try:
            origin = message.origin
            if origin is not None and not await self._outbound.organisation.includes(origin):
                teams = list(origin.teams)
                log.info("slack_connect_refused", event_id=msg.event_id, user=msg.user, teams=teams)
                if message.follow_up_only:  # their replies among people in a thread are left alone
                    return
                # Told why, once per message (a mention arrives twice), and only when they wrote to the bot.
                msg = dataclasses.replace(msg, refusal=slack_text.CONNECT_REFUSED)
            await self._intake.submit(await self._complete(msg))
        except Exception:
            bound.exception("slack_intake_failed")
            doing = text.DOING["ingest" if msg.files else "ask"]
            reply = Reply(text.INTERNAL_ERROR.format(doing=doing, ref=msg.event_id[:12]), kind="error")
            try:
                await self._outbound.sender.finish(msg.address, None, reply)
            except Exception:
                bound.exception("slack_apology_failed")

    async def _complete(self, msg: Incoming) -> Incoming:
        """Fill in what the event left out: Slack Connect files' names."""
        if msg.refusal or all(f.name and f.url for f in msg.files):
            return msg
        return dataclasses.replace(msg, files=tuple([await self._described(f) for f in msg.files]))

    async def _described(self, file: FileRef) -> FileRef:
        if file.name and file.url:
            return file
        try:
            return await self._outbound.files.describe(file)
        except Exception as exc:
            log.warning("slack_file_info_failed", file_id=file.id, error=str(exc)[:200])
            return dataclasses.replace(file, name=file.name or file.id)

    async def _record(self, vote: FeedbackVote) -> None:
        await self._intake.feedback(vote)

    async def _follow_up(self, feedback: Feedback) -> None:
        """A 👎 opens the form that asks why (its trigger lasts 3 s); a 👍 is thanked."""
        if feedback.vote == "down" and feedback.trigger_id:
            view = reason_form(reason_metadata(feedback))
            try:
                await self._outbound.client.views_open(trigger_id=feedback.trigger_id, view=view)
                return
            except Exception as exc:  # e.g. expired_trigger_id: thanked instead
                log.warning("slack_feedback_form_failed", error=f"{type(exc).__name__}: {exc}"[:200])
        await self._thank(feedback)

    async def _thank(self, feedback: Feedback) -> None:
        try:
            await self._outbound.client.chat_postEphemeral(
                channel=feedback.channel,
                user=feedback.user,
                thread_ts=feedback.thread_ts,
                text=text.FEEDBACK_THANKS,
            )
        except Exception:
            log.exception("slack_feedback_ack_failed", event_id=feedback.event_id)

    async def _suggest(self, thread: AssistantThread) -> None:
        prompts = [{"title": title, "message": message} for title, message in slack_text.ASSISTANT_PROMPTS]
        try:
            await self._outbound.client.assistant_threads_setSuggestedPrompts(
                channel_id=thread.channel,
                thread_ts=thread.thread_ts,
                prompts=prompts,
                title=slack_text.ASSISTANT_PROMPTS_TITLE,
            )
        except Exception:
            log.exception("slack_suggested_prompts_failed", thread_ts=thread.thread_ts)
