"""A local stand-in for the Bot Framework services a Teams bot talks to.

A real aiohttp server on 127.0.0.1 (ephemeral port) that the real botbuilder SDK talks to over HTTP:

- the Bot Connector REST API under `service_url` (it records every `POST`/`PUT`
  `/v3/conversations/{conversationId}/activities[/{activityId}]` and answers `{"id": …}`);
- file downloads (`add_file` returns the `downloadUrl`; `expire_file` makes it answer 401 as an expired
  SharePoint link does; `add_redirect` answers a redirect), recording the request headers so a test can
  check no token was sent;
- Teams' streaming protocol (docs: "Stream bot messages", msteams-platform/bots/streaming-ux.md): an
  activity with a `streaminfo` entity starts a stream (201 with the stream's id), continues it (202,
  one text update a second at most: 429 otherwise, out of order: 202 dropped) or ends it (the final
  message); `refuse_streaming` answers 403 ContentStreamNotAllowed as Teams does where streaming is not
  allowed, `stop_streams_after` as when the user presses stop, `stream_time_limit` as the two minutes;
- the Entra token endpoint (`/{tenant}/oauth2/v2.0/token`, client-credentials grant) for the bot's
  outgoing token;
- OpenID metadata and signing keys for incoming tokens (`openid_url`, `sign` makes a token), or a
  metadata endpoint that never answers (`hang_openid`).

    async with FakeBotConnector() as fake:
        activity["serviceUrl"] = fake.service_url
        ...
        (reply,) = fake.activities("POST")
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.local_server import LocalServer

KEY_ID = "fake-key-1"
BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
# The Bot Framework's real signing keys are endorsed for every channel it serves, not only Teams: a
# token for a Web Chat or Direct Line activity passes botbuilder's signature check just as Teams' does.
ENDORSED_CHANNELS = ("msteams", "webchat", "directline", "skype", "slack", "telegram", "emulator")


@dataclass(frozen=True)
class Call:
    """One request the bot made to the Bot Connector."""

    method: str
    conversation_id: str
    activity_id: str | None  # in the path: the activity replied to (POST) or edited (PUT)
    body: dict[str, Any]
    response_id: str  # the id the fake answered: the new message's, or the edited one's
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200  # what the fake answered (a refused stream activity: 403)
    at: float = 0.0  # time.perf_counter() when it arrived

    @property
    def stream(self) -> dict[str, Any] | None:
        """The activity's streaminfo entity, if it has one."""
        return next((e for e in self.body.get("entities") or () if e.get("type") == "streaminfo"), None)

    @property
    def accepted(self) -> bool:
        return self.status < 300

    @property
    def type(self) -> str:
        return str(self.body.get("type", ""))

    @property
    def text(self) -> str:
        return str(self.body.get("text") or "")


@dataclass
class _Stream:
    sequence: int
    started: float
    last_chunk: float
    chunks: int = 0
    done: bool = False


TEAM_GROUP = "02bd9fd6-8f93-4758-87c3-1fb73740a315"  # the test team's Entra (AAD) group id
STREAM_GAP_S = 0.9  # the least time between two text updates of one stream the fake accepts (Teams: ~1 s)
_NOT_ALLOWED = "ContentStreamNotAllowed"


@dataclass
class _File:
    data: bytes
    status: int = 200
    location: str | None = None  # a redirect's target
    chunked: bool = False


class FakeBotConnector(LocalServer):
    """See the module docstring."""

    def __init__(self, *, tenant: str = "56653e9d-2158-46ee-90d7-675c39642038") -> None:
        super().__init__()
        self.tenant = tenant
        self.calls: list[Call] = []
        self.downloads: list[dict[str, str]] = []  # headers of each file request
        self.token_requests: list[dict[str, str]] = []
        self.openid_requests = 0
        self._files: dict[str, _File] = {}
        self._ids = itertools.count(1)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._hang_openid = False
        self._streams: dict[str, _Stream] = {}
        self._refuse_streaming = False
        self._stop_after: int | None = None
        self.stream_time_limit = 120.0
        self.stream_gap = STREAM_GAP_S  # 0: any pace (a test with a clock of its own)
        self.team_lookups: list[str] = []  # the team id of each GET /v3/teams/{teamId}
        self.team_groups: dict[str, str] = {}  # team id → its Entra group id (any other team: TEAM_GROUP)

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeBotConnector is not started; use `async with FakeBotConnector()`")
        return f"http://127.0.0.1:{self._port}"

    @property
    def service_url(self) -> str:
        """Shaped like Teams' own (`https://smba.trafficmanager.net/amer/<tenant>/`), path and all."""
        return f"{self.base_url}/amer/{self.tenant}/"

    @property
    def openid_url(self) -> str:
        return f"{self.base_url}/openid/.well-known/openidconfiguration"

    @property
    def login_url(self) -> str:
        return self.base_url

    # -- scripting ---------------------------------------------------------------------------------

    def add_file(self, name: str, data: bytes, *, chunked: bool = False) -> str:
        """Serve `data` and return its pre-authenticated download URL (as SharePoint's, with tempauth).

        `chunked`: sent in pieces with no Content-Length, so only the bytes received tell its size."""
        key = f"{next(self._ids)}-{name}"
        self._files[key] = _File(data, chunked=chunked)
        return f"{self.base_url}/personal/download/{key}?tempauth=fake-{key}"

    def add_redirect(self, location: str, *, status: int = 302) -> str:
        """A download URL that answers `status` with `Location: location` (as SharePoint may)."""
        key = f"{next(self._ids)}-redirect"
        self._files[key] = _File(b"", status=status, location=location)
        return f"{self.base_url}/personal/download/{key}?tempauth=fake-{key}"

    def retarget_redirect(self, url: str, location: str) -> None:
        self._files[_file_key(url)].location = location

    def expire_file(self, url: str, status: int = 401) -> None:
        self._files[_file_key(url)].status = status

    def refuse_streaming(self) -> None:
        """Answer every stream activity 403 ContentStreamNotAllowed (streaming not allowed here)."""
        self._refuse_streaming = True

    def stop_streams_after(self, chunks: int) -> None:
        """After `chunks` text updates the user presses stop: the stream refuses what follows (403)."""
        self._stop_after = chunks

    def hang_openid(self) -> None:
        """The OpenID metadata endpoint stops answering (until the fake closes)."""
        self._hang_openid = True

    def sign(self, claims: dict[str, Any], *, kid: str = KEY_ID, key: Any = None) -> str:
        """A JWT signed with the fake's key (or another), shaped like the Bot Connector's."""
        now = int(time.time())
        payload = {"iss": BOT_FRAMEWORK_ISSUER, "nbf": now - 10, "exp": now + 3600, **claims}
        return jwt.encode(payload, key or self._key, algorithm="RS256", headers={"kid": kid})

    # -- reading back --------------------------------------------------------------------------------

    def activities(self, method: str | None = None, *, type: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if (method is None or c.method == method) and (type is None or c.type == type)
        ]

    # -- lifecycle ---------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._route)

    # -- handlers ----------------------------------------------------------------------------------

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if "/v3/conversations/" in path:
            return await self._conversation(request)
        if "/v3/teams/" in path and request.method == "GET":
            return self._team(request)
        if path.startswith("/personal/download/"):
            return await self._download(request)
        if path.startswith("/openid/"):
            return await self._openid(request)
        if path.endswith("/oauth2/v2.0/token") and request.method == "POST":
            return await self._token(request)
        return web.json_response({"error": {"code": "NotFound", "message": path}}, status=404)

    async def _conversation(self, request: web.Request) -> web.Response:
        # Conversation ids hold `:` `@` `;` `=`; the SDK percent-encodes them into the path.
        tail = request.raw_path.split("/v3/conversations/", 1)[1].split("?", 1)[0]
        segments = [unquote(s) for s in tail.split("/")]
        if len(segments) < 2 or segments[1] != "activities":
            return web.json_response({"error": {"code": "BadSyntax"}}, status=400)
        activity_id = segments[2] if len(segments) > 2 else None
        if request.method not in ("POST", "PUT") or (request.method == "PUT" and not activity_id):
            return web.json_response({"error": {"code": "MethodNotAllowed"}}, status=405)
        body = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items()}
        new_id = activity_id if request.method == "PUT" else f"{int(time.time() * 1000)}{next(self._ids):04d}"
        call = Call(
            request.method, segments[0], activity_id, body, str(new_id), headers, at=time.perf_counter()
        )
        status, answer = 200, {"id": new_id}
        if call.stream is not None and request.method == "POST":
            status, answer = self._stream_step(call.stream, body, str(new_id))
        self.calls.append(replace(call, status=status, response_id=str(answer.get("id") or "")))
        return web.json_response(answer, status=status)

    # -- Teams streaming -------------------------------------------------------------------------------

    def _stream_step(
        self, info: dict[str, Any], body: dict[str, Any], new_id: str
    ) -> tuple[int, dict[str, Any]]:
        """Status and body Teams answers a stream activity with (streaming-ux.md, "Response codes")."""
        kind, stream_id = info.get("streamType"), info.get("streamId")
        if kind not in ("informative", "streaming", "final"):
            return _stream_error(400, "BadRequest", f"unknown streamType {kind!r}")
        if self._refuse_streaming:
            return _stream_error(403, _NOT_ALLOWED, "Content stream is not allowed")
        if not stream_id:
            return self._start_stream(info, body, new_id)
        stream = self._streams.get(str(stream_id))
        if stream is None or stream.done:
            return _stream_error(
                403, _NOT_ALLOWED, "Content stream is not allowed on an already completed streamed message"
            )
        now = time.monotonic()
        if now - stream.started > self.stream_time_limit:
            stream.done = True
            return _stream_error(403, _NOT_ALLOWED, "Content stream finished due to exceeded streaming time.")
        if self._stop_after is not None and stream.chunks >= self._stop_after:
            stream.done = True
            return _stream_error(
                403, _NOT_ALLOWED, "Content stream is not allowed on a stopped streamed message"
            )
        if kind == "final":
            return self._end_stream(stream, info, body, str(stream_id))
        return self._continue_stream(stream, info, body, now)

    def _start_stream(
        self, info: dict[str, Any], body: dict[str, Any], new_id: str
    ) -> tuple[int, dict[str, Any]]:
        if info.get("streamType") == "final" or info.get("streamSequence") != 1:
            return _stream_error(400, "BadRequest", "a stream starts with streamSequence 1")
        if body.get("type") != "typing" or not body.get("text"):
            return _stream_error(400, "BadRequest", "Start streaming activities should include text")
        now = time.monotonic()
        self._streams[new_id] = _Stream(sequence=1, started=now, last_chunk=now - STREAM_GAP_S)
        return 201, {"id": new_id}

    def _continue_stream(
        self, stream: _Stream, info: dict[str, Any], body: dict[str, Any], now: float
    ) -> tuple[int, dict[str, Any]]:
        sequence = info.get("streamSequence")
        if body.get("type") != "typing" or not body.get("text") or not isinstance(sequence, int):
            return _stream_error(
                400, "BadRequest", "a streaming activity is typing, with text and a sequence"
            )
        if sequence <= stream.sequence:
            return _stream_error(202, "ContentStreamSequenceOrderPreConditionFailed", "PreCondition failed")
        if now - stream.last_chunk < self.stream_gap:
            return 429, {"error": {"code": "Throttled", "message": "API calls quota exceeded"}}
        stream.sequence, stream.last_chunk, stream.chunks = sequence, now, stream.chunks + 1
        return 202, {}

    def _end_stream(
        self, stream: _Stream, info: dict[str, Any], body: dict[str, Any], stream_id: str
    ) -> tuple[int, dict[str, Any]]:
        if body.get("type") != "message" or "streamSequence" in info:
            return _stream_error(400, "BadRequest", "the final message is a message without streamSequence")
        stream.done = True
        return 200, {"id": stream_id}

    def _team(self, request: web.Request) -> web.Response:
        """TeamDetails (`GET /v3/teams/{teamId}`): the team's Entra group id, as botbuilder's TeamsInfo
        reads it; the bot's token is required."""
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        team = unquote(request.raw_path.split("/v3/teams/", 1)[1].split("?", 1)[0])
        self.team_lookups.append(team)
        group = self.team_groups.get(team, TEAM_GROUP)
        return web.json_response({"id": team, "name": "Engineering", "aadGroupId": group})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        self.downloads.append({k.lower(): v for k, v in request.headers.items()})
        served = self._files.get(request.path.rsplit("/", 1)[1])
        if served is None:
            return web.Response(status=404)
        if served.location is not None:
            return web.Response(status=served.status, headers={"Location": served.location})
        if served.status != 200:
            return web.Response(status=served.status, text="<error>tempauth expired</error>")
        if served.chunked:
            return await stream_body(request, served.data)
        return web.Response(body=served.data, content_type="application/octet-stream")

    async def _openid(self, request: web.Request) -> web.Response:
        self.openid_requests += 1
        if self._hang_openid:
            await self._closing.wait()
            return web.Response(status=503)
        if request.path.endswith("/keys"):
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
            jwk.update(kid=KEY_ID, use="sig", endorsements=list(ENDORSED_CHANNELS))
            return web.json_response({"keys": [jwk]})
        return web.json_response({"issuer": BOT_FRAMEWORK_ISSUER, "jwks_uri": f"{self.base_url}/openid/keys"})

    async def _token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        if form.get("grant_type") != "client_credentials" or form.get("client_secret") != "fake-password":
            return web.json_response(
                {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret"},
                status=401,
            )
        token = f"fake-bot-token-{len(self.token_requests)}"
        return web.json_response({"token_type": "Bearer", "expires_in": 3599, "access_token": token})


def _stream_error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": code, "message": message}}


async def stream_body(request: web.Request, data: bytes) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for start in range(0, len(data), 16 * 1024):
            await response.write(data[start : start + 16 * 1024])
        await response.write_eof()
    except ConnectionError:  # the client stopped reading: what a size cap does
        pass
    return response


def _file_key(url: str) -> str:
    return url.split("?", 1)[0].rsplit("/", 1)[1]
