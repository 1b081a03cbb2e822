"""A local stand-in for Slack: the Web API, file downloads, response_urls and a Socket Mode websocket.

A real aiohttp server on 127.0.0.1 (ephemeral port) that the real `slack_sdk` clients talk to over
HTTP. It records every call, keeps the messages posted and edited (so a test can read a thread as a
person would see it), answers in the shapes of Slack's documented responses (the fixtures in
../shared/fixtures/slack/web_api), and can be scripted to fail the next call to a method.

    async with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        slack.fail_next("chat.postMessage", status=429, retry_after=1)
        ...
        assert [c.method for c in slack.calls] == ["chat.postMessage", "chat.postMessage"]

File downloads (`url_private_download`) need `Authorization: Bearer <bot token>`; without it the
server answers as Slack does: HTTP 200 with an HTML login page.

Streaming (chat.startStream / appendStream / stopStream) follows Slack's method reference
(docs.slack.dev/reference/methods/chat.startStream etc.): the streamed message's `text` is the Markdown
sent so far, `streaming` is True until it stops; a channel (not a DM) needs recipient_team_id and
recipient_user_id; after a stream expired (`expire_streams`) or was stopped, append and stop answer
`message_not_in_streaming_state`. `refuse_streaming(error)` makes every startStream answer that error,
as a workspace without the AI-apps feature would. `enforce_tiers()` answers HTTP 429 `ratelimited` with
Retry-After once a method exceeds its documented tier in a sliding minute (RATE_TIERS).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.local_server import LocalServer

# Calls per minute per method, the floor of each documented tier (docs.slack.dev/apis/web-api/rate-limits:
# Tier 2 20+/min, Tier 3 50+/min, Tier 4 100+/min; each method's page names its tier).
RATE_TIERS = {
    "chat.startStream": 20,  # Tier 2
    "chat.stopStream": 20,  # Tier 2
    "chat.appendStream": 100,  # Tier 4
    "chat.update": 50,  # Tier 3
    "chat.delete": 50,  # Tier 3
    "views.open": 100,  # Tier 4
}
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"


@dataclass(frozen=True)
class ApiCall:
    method: str
    params: dict[str, Any]
    token: str
    at: float  # time.perf_counter() when it arrived


@dataclass
class FakeFile:
    id: str
    name: str
    data: bytes
    mimetype: str
    user: str


@dataclass(frozen=True)
class _Failure:
    status: int
    retry_after: float | None
    error: str | None


@dataclass
class _Stream:
    started: float  # time.monotonic()
    channel: str
    mode: str  # "markdown_text" | "chunks": Slack refuses a later call in the other mode
    live: bool = True


@dataclass
class _SocketState:
    ws: web.WebSocketResponse | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    acks: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)


class FakeSlack(LocalServer):
    """See the module docstring."""

    def __init__(
        self,
        *,
        team_id: str = "T111",
        bot_user_id: str = "W111",
        bot_id: str = "B111",
        bot_token: str = "xoxb-111-222-fake",
        app_token: str = "xapp-1-A111-fake",
    ) -> None:
        super().__init__()
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_token = bot_token
        self.app_token = app_token
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) → message as shown now
        self.ephemeral: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []  # bodies POSTed to response_urls
        self.downloads: list[tuple[str, bool]] = []  # (file id, had the right token)
        self.files: dict[str, FakeFile] = {}
        # team.info: workspace id → its Enterprise Grid org (None: a workspace in no org)
        self.teams: dict[str, str | None] = {team_id: None}
        self.serve_login_page = False  # answer downloads with the login page even with the token
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._delays: dict[str, deque[float]] = defaultdict(deque)
        self.held: list[str] = []  # methods of calls being held by `delay_next` right now
        self.dropped: list[str] = []  # held calls whose caller went away before they were handled
        self._ts = itertools.count(1)
        self._socket = _SocketState()
        self._changed = asyncio.Condition()
        self.streams: dict[tuple[str, str], _Stream] = {}
        self.streaming_refusal: str | None = None  # the error every chat.startStream answers
        self.stream_lifetime: float | None = None  # seconds after its start a stream expires
        self.tier_window: float | None = None  # enforce RATE_TIERS over this many seconds
        self.limited: list[str] = []  # methods answered 429 by the tier enforcement
        self._accepted: dict[str, deque[float]] = defaultdict(deque)  # calls within their tier
        self.views: list[dict[str, Any]] = []  # views.open's views, in order

    # -- scripting -----------------------------------------------------------------------------------

    def fail_next(
        self, method: str, *, status: int = 429, retry_after: float | None = 1, error: str | None = None
    ) -> None:
        """Make the next call to `method` fail: an HTTP status (429 with Retry-After by default), or
        with `status=200, error="…"` Slack's `{"ok": false, "error": …}`."""
        self._failures[method].append(_Failure(status, retry_after, error))

    def refuse_streaming(self, error: str | None = "not_allowed") -> None:
        """Answer every chat.startStream with `{"ok": false, "error": error}` (None: stream again)."""
        self.streaming_refusal = error

    def expire_streams(self, after: float | None = 0.0) -> None:
        """Streams end `after` seconds from their start (Slack: about five minutes, undocumented); 0
        ends every live one now. None: streams never expire."""
        self.stream_lifetime = after
        if after == 0:
            for stream in self.streams.values():
                stream.live = False

    def enforce_tiers(self, window: float = 60.0) -> None:
        """From now on, a method of RATE_TIERS called more often than its tier in any `window`
        seconds is answered HTTP 429 with Retry-After, as Slack does."""
        self.tier_window = window

    def delay_next(self, method: str, seconds: float) -> None:
        """Hold the next call to `method` for `seconds` before it is handled, as a slow network would.
        If the caller is gone by then (killed), the call is dropped: it never reached Slack."""
        self._delays[method].append(seconds)

    def add_file(
        self, name: str, data: bytes, *, mimetype: str = "text/plain", user: str = "U111"
    ) -> dict[str, Any]:
        """Store a file and return its `files[]` object, shaped like an Events API file_share's."""
        file_id = f"F{len(self.files) + 1:03d}{uuid.uuid4().hex[:6].upper()}"
        self.files[file_id] = FakeFile(file_id, name, data, mimetype, user)
        return self.file_object(file_id)

    def file_object(self, file_id: str) -> dict[str, Any]:
        f = self.files[file_id]
        now = int(time.time())
        private = f"{self.base_url}/files-pri/{self.team_id}-{f.id}"
        return {
            "id": f.id,
            "created": now,
            "timestamp": now,
            "name": f.name,
            "title": f.name,
            "mimetype": f.mimetype,
            "filetype": f.name.rsplit(".", 1)[-1] if "." in f.name else "",
            "pretty_type": f.name.rsplit(".", 1)[-1].upper() if "." in f.name else "",
            "user": f.user,
            "editable": False,
            "size": len(f.data),
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": False,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{private}/{f.name}",
            "url_private_download": f"{private}/download/{f.name}",
            "permalink": f"https://fake.slack.com/files/{f.user}/{f.id}/{f.name}",
            "permalink_public": f"https://slack-files.com/{self.team_id}-{f.id}-0000",
            "has_rich_preview": False,
        }

    # -- reading what happened -----------------------------------------------------------------------

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The bot's messages in a thread as they read now (edits applied), oldest first."""
        found = [
            m
            for (ch, _), m in self.messages.items()
            if ch == channel and (m.get("thread_ts") == thread_ts or m["ts"] == thread_ts)
        ]
        return sorted(found, key=lambda m: float(m["ts"]))

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout)

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeSlack is not started; use `async with FakeSlack() as slack`")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self, name: str = "commands") -> str:
        return f"{self.base_url}/{name}/{self.team_id}/{next(self._ts)}/{uuid.uuid4().hex[:16]}"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/files-pri/{key}/download/{name}", self._download)
        app.router.add_post("/commands/{rest:.*}", self._response_url)
        app.router.add_post("/actions/{rest:.*}", self._response_url)
        app.router.add_get("/link/", self._websocket)

    async def close(self) -> None:
        if self._socket.ws is not None:
            await self._socket.ws.close()
        await super().close()

    # -- Socket Mode ---------------------------------------------------------------------------------

    async def socket_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._socket.connected.wait(), timeout)

    async def send_envelope(
        self,
        payload: dict[str, Any],
        *,
        kind: str = "events_api",
        retry_attempt: int = 0,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Push one envelope down the Socket Mode connection; returns the app's ack."""
        ws = self._socket.ws
        if ws is None:
            raise RuntimeError("no Socket Mode connection")
        envelope_id = str(uuid.uuid4())
        ack: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._socket.acks[envelope_id] = ack
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        await ws.send_str(json.dumps(envelope))
        return await asyncio.wait_for(ack, timeout)

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._socket.ws = ws
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A111"}}
        await ws.send_str(json.dumps(hello))
        self._socket.connected.set()
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                data = json.loads(message.data)
                future = self._socket.acks.pop(str(data.get("envelope_id")), None)
                if future is not None and not future.done():
                    future.set_result(data)
        self._socket.connected.clear()
        return ws

    # -- handlers ------------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        delays = self._delays.get(method)
        if delays and not await self._held(method, delays.popleft(), request):
            return web.Response(status=499)
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(await request.post())
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or str(params.pop("token", ""))
        call = ApiCall(method, params, token, time.perf_counter())
        self.calls.append(call)
        limited = self._over_tier(method, call.at)
        if limited is not None:
            return limited
        failures = self._failures.get(method)
        if failures:
            failure = failures.popleft()
            if failure.status != 200:
                headers = (
                    {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
                )
                error = "ratelimited" if failure.status == 429 else "fatal_error"
                return web.json_response(
                    {"ok": False, "error": error}, status=failure.status, headers=headers
                )
            return await self._answer({"ok": False, "error": failure.error or "fatal_error"})
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != expected:
            return await self._answer({"ok": False, "error": "invalid_auth" if token else "not_authed"})
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return await self._answer({"ok": False, "error": "unknown_method"})
        return await self._answer(handler(params))

    def _over_tier(self, method: str, now: float) -> web.Response | None:
        limit = RATE_TIERS.get(method)
        if self.tier_window is None or limit is None:
            return None
        accepted = self._accepted[method]
        while accepted and accepted[0] <= now - self.tier_window:
            accepted.popleft()
        if len(accepted) < limit:
            accepted.append(now)
            return None
        self.limited.append(method)
        retry_after = max(1, math.ceil(accepted[0] + self.tier_window - now))
        headers = {"Retry-After": str(retry_after)}
        return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=headers)

    async def _held(self, method: str, seconds: float, request: web.Request) -> bool:
        """Wait `seconds`; False when the caller disconnected meanwhile."""
        self.held.append(method)
        async with self._changed:
            self._changed.notify_all()
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                transport = request.transport
                if transport is None or transport.is_closing():
                    self.dropped.append(method)
                    return False
                await asyncio.sleep(0.05)
        finally:
            self.held.remove(method)
            async with self._changed:
                self._changed.notify_all()
        return True

    async def _answer(self, body: dict[str, Any]) -> web.Response:
        async with self._changed:
            self._changed.notify_all()
        return web.json_response(body)

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake.slack.com/",
            "team": "Fake Workspace",
            "user": "threadwise",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("text") and not params.get("blocks"):
            return {"ok": False, "error": "no_text"}
        ts = self._next_ts()
        message = {
            "bot_id": self.bot_id,
            "type": "message",
            "text": params.get("text", ""),
            "user": self.bot_user_id,
            "ts": ts,
            "blocks": _blocks(params.get("blocks")),
        }
        if params.get("thread_ts"):
            message["thread_ts"] = str(params["thread_ts"])
        self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (str(params.get("channel", "")), str(params.get("ts", "")))
        message = self.messages.get(key)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message["text"] = params.get("text", "")
        if "blocks" in params:
            message["blocks"] = _blocks(params["blocks"])
        message["edits"] = message.get("edits", 0) + 1
        return {"ok": True, "channel": key[0], "ts": key[1], "text": message["text"], "message": message}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (str(params.get("channel", "")), str(params.get("ts", "")))
        if self.messages.pop(key, None) is None:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": key[0], "ts": key[1]}

    # chat.startStream / appendStream / stopStream: shapes of docs.slack.dev/reference/methods/chat.*Stream

    def _chat_startStream(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.streaming_refusal is not None:
            return {"ok": False, "error": self.streaming_refusal}
        channel = str(params.get("channel", ""))
        problem = _stream_content_problem(params) or _recipient_problem(channel, params)
        if problem is not None:
            return {"ok": False, "error": problem}
        ts = self._next_ts()
        message = {"bot_id": self.bot_id, "type": "message", "user": self.bot_user_id, "ts": ts}
        message.update(text="", blocks=[], streaming=True, thread_ts=str(params.get("thread_ts") or ts))
        self.messages[(channel, ts)] = message
        self.streams[(channel, ts)] = _Stream(time.monotonic(), channel, _stream_mode(params))
        _append_content(message, params)
        return {"ok": True, "channel": channel, "ts": ts}

    def _chat_appendStream(self, params: dict[str, Any]) -> dict[str, Any]:
        problem = self._stream_problem(params) or _stream_content_problem(params, required=True)
        if problem is not None:
            return {"ok": False, "error": problem}
        key = (str(params["channel"]), str(params["ts"]))
        _append_content(self.messages[key], params)
        return {"ok": True, "channel": key[0], "ts": key[1]}

    def _chat_stopStream(self, params: dict[str, Any]) -> dict[str, Any]:
        problem = self._stream_problem(params) or _stream_content_problem(params)
        if problem is not None:
            return {"ok": False, "error": problem}
        key = (str(params["channel"]), str(params["ts"]))
        message = self.messages[key]
        _append_content(message, params)
        message.update(streaming=False, blocks=_blocks(params.get("blocks")))
        self.streams[key].live = False
        return {"ok": True, "channel": key[0], "ts": key[1], "message": message}

    def _stream_problem(self, params: dict[str, Any]) -> str | None:
        key = (str(params.get("channel", "")), str(params.get("ts", "")))
        stream = self.streams.get(key)
        if stream is None or key not in self.messages:
            return "message_not_found"
        lifetime = self.stream_lifetime
        if lifetime is not None and time.monotonic() - stream.started >= lifetime:
            stream.live = False
        if not stream.live:
            return "message_not_in_streaming_state"
        if _stream_mode(params, stream.mode) != stream.mode:
            return "streaming_mode_mismatch"
        return None

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        trigger = str(params.get("trigger_id", ""))
        view = params.get("view")
        if isinstance(view, str):  # form-encoded calls send it as JSON
            view = json.loads(view)
        if not trigger:
            return {"ok": False, "error": "invalid_trigger_id"}
        if not isinstance(view, dict) or view.get("type") != "modal":
            return {"ok": False, "error": "invalid_arguments"}
        self.views.append(view)
        return {"ok": True, "view": {"id": f"V{len(self.views):04d}", **view}}

    def _chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self.ephemeral.append(dict(params))
        return {"ok": True, "message_ts": self._next_ts()}

    def _assistant_threads_setStatus(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    def _assistant_threads_setTitle(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    def _assistant_threads_setSuggestedPrompts(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    def _team_info(self, params: dict[str, Any]) -> dict[str, Any]:
        """web_api team.info's shape: `enterprise_id` only for a workspace in an Enterprise Grid org."""
        team_id = str(params.get("team") or self.team_id)
        if team_id not in self.teams:
            return {"ok": False, "error": "team_not_found"}
        team: dict[str, Any] = {"id": team_id, "name": f"Workspace {team_id}", "domain": team_id.lower()}
        enterprise = self.teams[team_id]
        if enterprise is not None:
            team.update(enterprise_id=enterprise, enterprise_name=f"Org {enterprise}")
        return {"ok": True, "team": team}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = str(params.get("file", ""))
        if file_id not in self.files:
            return {"ok": False, "error": "file_not_found"}
        return {"ok": True, "file": self.file_object(file_id), "comments": [], "response_metadata": {}}

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self._port}/link/?ticket={uuid.uuid4()}"}

    async def _download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["key"].split("-", 1)[-1]
        authorised = request.headers.get("Authorization") == f"Bearer {self.bot_token}"
        self.downloads.append((file_id, authorised))
        stored = self.files.get(file_id)
        if not authorised or self.serve_login_page:
            return web.Response(body=LOGIN_PAGE, content_type="text/html")
        if stored is None:
            return web.Response(status=404, text="file_not_found")
        return web.Response(body=stored.data, content_type=stored.mimetype)

    async def _response_url(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        async with self._changed:
            self._changed.notify_all()
        return web.Response(text="ok")


def _stream_mode(params: dict[str, Any], default: str = "markdown_text") -> str:
    if params.get("chunks"):
        return "chunks"
    return "markdown_text" if params.get("markdown_text") else default


def _stream_content_problem(params: dict[str, Any], *, required: bool = False) -> str | None:
    text, chunks = params.get("markdown_text"), params.get("chunks")
    if text and chunks:
        return "cannot_provide_both_markdown_text_and_chunks"
    if required and not (text or chunks):
        return "markdown_text_or_chunks_required"
    if isinstance(text, str) and len(text) > 12_000:
        return "msg_too_long"
    return None


def _recipient_problem(channel: str, params: dict[str, Any]) -> str | None:
    """Streaming to a channel (not a DM) names who asks: `recipient_team_id` and `recipient_user_id`."""
    if not channel:
        return "channel_not_found"
    if channel.startswith("D"):
        return None
    if not params.get("recipient_team_id"):
        return "missing_recipient_team_id"
    if not params.get("recipient_user_id"):
        return "missing_recipient_user_id"
    return None


def _append_content(message: dict[str, Any], params: dict[str, Any]) -> None:
    """The streamed text, as the message reads: markdown_text, or the text of markdown_text chunks."""
    chunks = params.get("chunks")
    if isinstance(chunks, str):
        chunks = json.loads(chunks)
    pieces = [str(c.get("text", "")) for c in chunks or () if c.get("type") == "markdown_text"]
    message["text"] += str(params.get("markdown_text") or "") + "".join(pieces)


def _blocks(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, str):  # form-encoded calls send blocks as a JSON string
        return list(json.loads(raw)) if raw else []
    return list(raw or [])
