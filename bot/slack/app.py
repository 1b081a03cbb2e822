"""The Bolt AsyncApp: verification, url_verification, self-event filtering — and thin listeners.

Listeners run before the response (`process_before_response=True`) and only translate the payload and
hand it to the platform, which starts its own tracked task: so the ack goes out in milliseconds, and
no work lives in Bolt's untracked tasks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.translate import FEEDBACK_ACTION_PREFIX, REASON_VIEW, SCOPE_ACTION_PREFIX

log = structlog.get_logger(__name__)

Body = dict[str, Any]
Authorize = Callable[[str | None, str | None, str | None], Awaitable[AuthorizeResult]]


class Listeners(Protocol):
    """What the platform does with each kind of payload (called inside the request: must be quick)."""

    def on_message(self, body: Body) -> None: ...

    def on_command(self, body: Body) -> None: ...

    def on_action(self, body: Body) -> None: ...

    def on_view_submission(self, body: Body) -> dict[str, str]:
        """A submitted form: the errors to show under its fields ({}: accepted, or ignored)."""
        ...

    def on_assistant_thread_started(self, body: Body) -> None: ...


class NoteRedeliveries(AsyncMiddleware):
    """Slack redelivers an event with the same event_id (and X-Slack-Retry-Num) when an ack was slow or
    lost. The dispatcher answers each message once, whichever delivery brings it; this only logs the
    retry and Slack's reason for it."""

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse:
        body = req.body or {}
        retry = _header(req, "x-slack-retry-num")
        if retry and body.get("type") == "event_callback":
            log.info(
                "slack_redelivery",
                event_id=body.get("event_id"),
                retry_num=retry,
                retry_reason=_header(req, "x-slack-retry-reason"),
            )
        return await next()


def build_bolt_app(
    *,
    client: AsyncWebClient,
    signing_secret: str,
    authorize: Authorize,
    listeners: Listeners,
) -> AsyncApp:
    async def authorize_request(
        enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        return await authorize(enterprise_id, team_id, user_id)

    app = AsyncApp(
        name="threadwise",
        client=client,
        signing_secret=signing_secret,
        authorize=authorize_request,
        process_before_response=True,
        attaching_conversation_kwargs_enabled=False,
        logger=_bolt_logger(),
    )
    app.use(NoteRedeliveries())

    async def message(body: Body) -> None:
        _guarded(listeners.on_message, body)

    async def command(ack: AsyncAck, body: Body) -> None:
        await ack()  # an empty ack shows nothing; the answer comes through the response_url
        _guarded(listeners.on_command, body)

    async def action(ack: AsyncAck, body: Body) -> None:
        await ack()
        _guarded(listeners.on_action, body)

    async def view(ack: AsyncAck, body: Body) -> None:
        try:
            errors = listeners.on_view_submission(body)
        except Exception:  # the form closes; the log says why
            log.exception("slack_listener_failed", type=body.get("type"))
            errors = {}
        await (ack(response_action="errors", errors=errors) if errors else ack())

    async def thread_started(body: Body) -> None:
        _guarded(listeners.on_assistant_thread_started, body)

    async def ignore(body: Body) -> None:
        """Acked so that Slack does not retry it; threadwise keeps no channel context."""

    app.event("app_mention")(message)
    app.event("message")(message)
    app.event("assistant_thread_started")(thread_started)
    app.event("assistant_thread_context_changed")(ignore)
    app.command(re.compile(r"^/"))(command)  # whatever the workspace calls the command
    app.action(re.compile(f"^({FEEDBACK_ACTION_PREFIX}|{SCOPE_ACTION_PREFIX})"))(action)
    app.view(REASON_VIEW)(view)
    return app


_INTENDED = ("As you gave `client` as well", "As `installation_store` or `authorize`")


class _BoltLogFilter(logging.Filter):
    """Two of Bolt's log lines, made fit for our logs (Bolt copies the filter to its child loggers).

    - A request with a bad signature is logged with its whole body: people's messages, at INFO, and
      whatever an attacker sent. Keep the fact, drop the body.
    - AsyncApp reads SLACK_BOT_TOKEN from the environment itself and warns that the client we pass
      wins over it, and that `authorize` wins over the client's token: that is the intent (the token
      comes from Settings, the bot's identity from our cached auth.test), so the warnings only mislead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Invalid request signature detected"):
            record.msg, record.args = "Invalid request signature detected (body not logged)", ()
        return not message.startswith(_INTENDED)


def _bolt_logger() -> logging.Logger:
    logger = logging.getLogger("slack_bolt")
    if not any(isinstance(f, _BoltLogFilter) for f in logger.filters):
        logger.addFilter(_BoltLogFilter())
    return logger


def _guarded(listener: Callable[[Body], None], body: Body) -> None:
    # An exception escaping a listener would make Bolt answer 500 and Slack redeliver: log it instead.
    try:
        listener(body)
    except Exception:
        log.exception("slack_listener_failed", event_id=body.get("event_id"), type=body.get("type"))


def _header(req: AsyncBoltRequest, name: str) -> str:
    values = req.headers.get(name) or []
    return str(values[0]) if values else ""
