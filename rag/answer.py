"""Turn a question and retrieved passages into an answer with numbered citations.

Two answerers share one small Protocol: `GroqAnswerer` asks a Groq-hosted model (streaming, with the
SDK's retries and an overall deadline) and falls back to `ExtractiveAnswerer`, which quotes the best
passages itself. The fallback is what keeps the bot answering when the LLM is down, slow, rate
limited or misconfigured: the user still gets passages with sources, never an error.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, Protocol

import groq
import httpx
import structlog
from groq.types.chat import (
    ChatCompletionMessageParam,
)

from rag.errors import ConfigError
from rag.focus import Highlight
from rag.lang import detect_language, phrase
from rag.prompt import build_messages, citations_for, finish_answer, not_found_answer, visible_partial
from rag.types import Answer, Passage, Turn

DEFAULT_GROQ_MODEL = "llama-3.3-70b-versatile"
DEFAULT_GROQ_BASE_URL = "https://api.groq.com"


DeltaCallback = Callable[[str], Awaitable[None]]

log = structlog.get_logger(__name__)


class Answerer(Protocol):
    async def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
    ) -> Answer: ...


# -- extractive ------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"[.!?…](?=[\s\"'”’)\]]|$)|[。！？]")


def trim_passage(text: str, max_chars: int) -> str:
    """Collapse whitespace and cut to at most max_chars, at the last sentence end if there is one."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, max_chars + 1) if m.end() <= max_chars]
    if ends and ends[-1] >= max_chars // 3:
        return text[: ends[-1]] + " …"
    cut = text[:max_chars].rsplit(" ", 1)[0] if " " in text[:max_chars] else text[:max_chars]
    return cut.rstrip(",;:-–— ") + " …"


# Picks the sentences that answer (rag.focus.SentenceHighlighter); CPU work, run in a thread.
Highlighter = Callable[[str, Sequence[Passage]], list[Highlight]]


class ExtractiveAnswerer:
    """Answers without a language model: an intro line and the one to three sentences of the passages
    that best answer the question, quoted with their source numbers; the passages are the sources.
    Without a highlighter (or when no passage has a sentence), the top passages quoted whole."""

    def __init__(
        self,
        *,
        reason: Literal["disabled", "unavailable"] = "disabled",
        max_passages: int = 3,
        max_chars: int = 600,
        highlighter: Highlighter | None = None,
    ) -> None:
        self._intro_key: Literal["extractive_intro", "extractive_intro_disabled"] = (
            "extractive_intro" if reason == "unavailable" else "extractive_intro_disabled"
        )
        self._max_passages = max_passages
        self._max_chars = max_chars
        self._highlighter = highlighter

    async def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
    ) -> Answer:
        if not passages:
            return not_found_answer(question)
        language = detect_language(question)
        shown = list(passages[: self._max_passages])
        picks = await asyncio.to_thread(self._highlighter, question, passages) if self._highlighter else []
        if picks:
            shown += [passages[i] for i in sorted({h.passage for h in picks}) if passages[i] not in shown]
            number = {id(p): n for n, p in enumerate(shown, start=1)}
            quotes = [f"“{h.sentence}” [{number[id(passages[h.passage])]}]" for h in picks]
        else:
            quotes = [
                f"[{n}] “{trim_passage(p.text, self._max_chars)}”" for n, p in enumerate(shown, start=1)
            ]
        text = "\n\n".join([phrase(language, self._intro_key), *quotes])
        return Answer(text=text, citations=citations_for(shown), mode="extractive", language=language)

    async def aclose(self) -> None:
        """Nothing to release; here so callers can close any answerer alike."""


# -- Groq ------------------------------------------------------------------------------------------


class _IncompleteStream(Exception):
    """The stream ended without a finish_reason (connection closed early) or with no text."""


def sdk_base_url(base_url: str | None) -> str:
    """The origin the SDK expects: it appends /openai/v1/... itself, so drop that if configured.

    Passing an explicit URL also stops the SDK from reading GROQ_BASE_URL from the environment.
    """
    url = (base_url or DEFAULT_GROQ_BASE_URL).rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


class _DeltaEmitter:
    """Calls on_delta with the visible text so far; a failing callback is logged and then ignored,
    because progress updates are cosmetic and must not cost the user the answer."""

    def __init__(self, callback: DeltaCallback | None, sources: int) -> None:
        self._callback = callback
        self._sources = sources
        self._last = ""

    async def push(self, raw: str) -> None:
        if self._callback is None:
            return
        shown = visible_partial(raw, self._sources)
        if not shown or shown == self._last:
            return
        self._last = shown
        try:
            await self._callback(shown)
        except Exception as exc:
            log.warning("answer_delta_callback_failed", error=type(exc).__name__)
            self._callback = None


class GroqAnswerer:
    """Answers with a Groq chat model, streaming; falls back to `fallback` on any upstream failure.

    `timeout_s` bounds the whole answer, retries and a stalled stream included, and is also the SDK's
    per-request timeout. Retries (429, 408, 409, 5xx, connection errors) are the SDK's own, with its
    exponential backoff and its honouring of Retry-After up to 60 s.
    """

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str | None,
        timeout_s: float = 30.0,
        max_retries: int = 2,
        fallback: ExtractiveAnswerer,
        temperature: float = 0.1,
        max_tokens: int = 1024,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self._client = groq.AsyncGroq(
            api_key=api_key, base_url=sdk_base_url(base_url), timeout=timeout_s, max_retries=max_retries
        )
        self._model = model
        self._timeout_s = timeout_s
        self._fallback = fallback
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._on_failure = on_failure  # the model failed: counted where the process keeps its metrics

    async def aclose(self) -> None:
        await self._client.close()

    async def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
    ) -> Answer:
        if not passages:
            return not_found_answer(question)  # nothing to ground an answer in: never ask the model
        messages = build_messages(question, passages, history)
        emitter = _DeltaEmitter(on_delta, len(passages))
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):  # stalls and slow retries count too
                raw = await self._stream(messages, emitter)
        except (
            groq.GroqError,
            httpx.HTTPError,
            TimeoutError,
            json.JSONDecodeError,
            _IncompleteStream,
        ) as exc:
            self._log_failure(exc, started)
            if self._on_failure is not None:
                self._on_failure()
            return await self._fallback.answer(question, passages, history=history)
        log.debug("llm_answered", model=self._model, elapsed_ms=_ms_since(started), chars=len(raw))
        return finish_answer(question, raw, passages)

    async def _stream(self, messages: list[ChatCompletionMessageParam], emitter: _DeltaEmitter) -> str:
        stream = await self._client.chat.completions.create(
            model=self._model,
            messages=messages,
            stream=True,
            temperature=self._temperature,
            max_completion_tokens=self._max_tokens,
        )
        parts: list[str] = []
        finished = False
        async with stream:  # closes the HTTP response on error or cancellation
            async for chunk in stream:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.delta.content:
                    parts.append(choice.delta.content)
                    await emitter.push("".join(parts))
                if choice.finish_reason is not None:
                    finished = True
        raw = "".join(parts)
        if not finished or not raw.strip():
            raise _IncompleteStream("stream ended early" if not finished else "empty completion")
        return raw

    def _log_failure(self, exc: BaseException, started: float) -> None:
        status = getattr(exc, "status_code", None)
        response = getattr(exc, "response", None)
        request_id = response.headers.get("x-request-id") if isinstance(response, httpx.Response) else None
        log.warning(
            "llm_unavailable_answering_extractively",
            error=type(exc).__name__,
            status=status,
            request_id=request_id,
            model=self._model,
            elapsed_ms=_ms_since(started),
            timeout_s=self._timeout_s,
        )
        log.debug("llm_failure_detail", detail=str(exc))


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


# -- factory ---------------------------------------------------------------------------------------


def build_answerer(
    *,
    provider: str,
    groq_api_key: str | None,
    groq_model: str,
    groq_base_url: str | None,
    timeout_s: float,
    max_retries: int,
    highlighter: Highlighter | None = None,
    on_failure: Callable[[], None] | None = None,
) -> Answerer:
    """The answerer the settings ask for; extractive when the LLM is disabled or has no key."""
    if provider == "extractive":
        return ExtractiveAnswerer(reason="disabled", highlighter=highlighter)
    if provider != "groq":
        raise ConfigError(f"LLM_PROVIDER must be 'groq' or 'extractive', not {provider!r}")
    if not groq_api_key:
        log.info("no GROQ_API_KEY: answering extractively")
        return ExtractiveAnswerer(reason="disabled", highlighter=highlighter)
    return GroqAnswerer(
        api_key=groq_api_key,
        model=groq_model or DEFAULT_GROQ_MODEL,
        base_url=groq_base_url,
        timeout_s=timeout_s,
        max_retries=max_retries,
        fallback=ExtractiveAnswerer(reason="unavailable", highlighter=highlighter),
        on_failure=on_failure,
    )
