"""A local stand-in for Groq's OpenAI-compatible chat completions endpoint.

A real aiohttp server on 127.0.0.1 (ephemeral port) that the real `groq` SDK talks to over HTTP. Tests
script what it does next with a queue of behaviours (answer, HTTP error, hang, broken or stalled stream)
and read back every request body it received. With an empty queue it answers `default_text`.
`delay` makes every answer take that long before its first byte, like a model thinking (benchmarks);
`token_interval` spaces the streamed deltas that far apart, like a model writing.

    async with FakeGroq() as fake:
        fake.enqueue_status(429, retry_after=0.01)
        fake.enqueue_answer("Five days [1].")
        client = AsyncGroq(api_key="test", base_url=fake.base_url)
        ...
        assert len(fake.requests) == 2

The SDK appends `/openai/v1/chat/completions` to its base_url, so `base_url` is the bare origin.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.local_server import LocalServer

CHAT_PATH = "/openai/v1/chat/completions"
MODELS_PATH = "/openai/v1/models"
DEFAULT_TEXT = "This is the fake model's default answer [1]."


@dataclass(frozen=True)
class _Answer:
    text: str
    finish_reason: str = "stop"


@dataclass(frozen=True)
class _Status:
    status: int
    retry_after: float | None
    message: str


@dataclass(frozen=True)
class _Hang:
    pass


@dataclass(frozen=True)
class _BrokenStream:
    partial_text: str


@dataclass(frozen=True)
class _StalledStream:
    partial_text: str


_Behaviour = _Answer | _Status | _Hang | _BrokenStream | _StalledStream


def split_into_deltas(text: str) -> list[str]:
    """Cut text into small pieces the way a model streams tokens: a word and its trailing space."""
    return re.findall(r"\S+\s*|\s+", text) or [""]


class FakeGroq(LocalServer):
    """The scripted fake server. See the module docstring."""

    def __init__(
        self,
        *,
        default_text: str = DEFAULT_TEXT,
        model: str = "llama-3.3-70b-versatile",
        delay: float = 0.0,
        token_interval: float = 0.0,
    ) -> None:
        super().__init__()
        self.default_text = default_text
        self.model = model
        self.delay = delay  # seconds every answer waits before its first byte
        self.token_interval = token_interval  # seconds between two streamed deltas
        self.first_token_at: list[float] = []  # time.perf_counter() as each stream's first delta went out
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self._queue: deque[_Behaviour] = deque()

    # -- scripting ---------------------------------------------------------------------------------

    def enqueue_answer(self, text: str, *, finish_reason: str = "stop") -> None:
        """Answer the next request with `text` (streamed in word-sized deltas when stream=true)."""
        self._queue.append(_Answer(text, finish_reason))

    def enqueue_status(self, status: int, *, retry_after: float | None = None, message: str = "") -> None:
        """Fail the next request with an HTTP error in Groq's JSON error shape.

        `retry_after` sets the Retry-After header (seconds, fractions allowed: the SDK honours values in
        (0, 60]; 0 or absent means the SDK's own exponential backoff of about 0.5 s, 1 s, ...).
        """
        self._queue.append(_Status(status, retry_after, message or f"fake error {status}"))

    def enqueue_hang(self) -> None:
        """Never answer the next request (the handler waits until the server shuts down)."""
        self._queue.append(_Hang())

    def enqueue_broken_stream(self, partial_text: str) -> None:
        """Start a 200 stream, send `partial_text`, then drop the connection mid-body."""
        self._queue.append(_BrokenStream(partial_text))

    def enqueue_stalled_stream(self, partial_text: str) -> None:
        """Start a 200 stream, send `partial_text`, then send nothing more until shutdown."""
        self._queue.append(_StalledStream(partial_text))

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeGroq is not started; use `async with FakeGroq() as fake`")
        return f"http://127.0.0.1:{self._port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post(CHAT_PATH, self._chat)
        app.router.add_get(MODELS_PATH, self._models)

    # -- handlers ----------------------------------------------------------------------------------

    async def _models(self, request: web.Request) -> web.Response:
        data = [{"id": self.model, "object": "model", "created": 0, "owned_by": "Meta", "active": True}]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append({name.lower(): value for name, value in request.headers.items()})
        self.paths.append(request.path)
        behaviour = self._queue.popleft() if self._queue else _Answer(self.default_text)
        stream = bool(body.get("stream"))
        if self.delay and isinstance(behaviour, _Answer):
            await asyncio.sleep(self.delay)
        match behaviour:
            case _Status():
                return self._error(behaviour)
            case _Hang():
                await self._closing.wait()
                return web.json_response({"error": {"message": "shutting down"}}, status=503)
            case _Answer() if stream:
                return await self._stream(request, split_into_deltas(behaviour.text), behaviour.finish_reason)
            case _Answer():
                return web.json_response(self._completion(behaviour.text, behaviour.finish_reason))
            case _BrokenStream():
                response = await self._stream(request, split_into_deltas(behaviour.partial_text), None)
                _drop_connection(request)
                return response
            case _StalledStream():
                await self._stream(request, split_into_deltas(behaviour.partial_text), None)
                await self._closing.wait()
                _drop_connection(request)
                return web.Response()
        raise AssertionError(f"unknown behaviour {behaviour!r}")

    def _error(self, behaviour: _Status) -> web.Response:
        headers = {}
        if behaviour.retry_after is not None:
            headers["retry-after"] = f"{behaviour.retry_after:g}"
        error_type = "rate_limit_exceeded" if behaviour.status == 429 else "api_error"
        payload = {"error": {"message": behaviour.message, "type": error_type, "code": error_type}}
        return web.json_response(payload, status=behaviour.status, headers=headers)

    async def _stream(
        self, request: web.Request, deltas: list[str], finish_reason: str | None
    ) -> web.StreamResponse:
        """Write SSE chunks; with finish_reason None stop after the deltas (no final chunk, no [DONE])."""
        headers = {"content-type": "text/event-stream", "x-request-id": "req_fake"}
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        await self._send(response, self._chunk(completion_id, {"role": "assistant", "content": ""}, None))
        for n, delta in enumerate(deltas):
            if n and self.token_interval:
                await asyncio.sleep(self.token_interval)
            await self._send(response, self._chunk(completion_id, {"content": delta}, None))
            if n == 0:
                self.first_token_at.append(time.perf_counter())
        if finish_reason is None:
            return response
        final = self._chunk(completion_id, {}, finish_reason)
        final["x_groq"] = {"id": f"req_{uuid.uuid4().hex[:26]}", "usage": _usage(len(deltas))}
        await self._send(response, final)
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    @staticmethod
    async def _send(response: web.StreamResponse, chunk: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(chunk)}\n\n".encode())

    def _chunk(self, completion_id: str, delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }

    def _completion(self, text: str, finish_reason: str) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": _usage(len(split_into_deltas(text))),
            "x_groq": {"id": f"req_{uuid.uuid4().hex[:26]}"},
        }


def _usage(completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": 100,
        "completion_tokens": completion_tokens,
        "total_tokens": 100 + completion_tokens,
        "queue_time": 0.001,
        "prompt_time": 0.001,
        "completion_time": 0.001,
        "total_time": 0.003,
    }


def _drop_connection(request: web.Request) -> None:
    """Close the socket without finishing the chunked body, as a crashed upstream would."""
    if request.transport is not None:
        request.transport.abort()
