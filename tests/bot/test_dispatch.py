"""The chat side end to end, minus the platform: Dispatcher → InProcessRunner → JobHandler → Engine.

The engine is real (embedded Chroma, extraction, search) on a fake embedder that needs no model
(words hashed into vectors); the other stand-ins are the ReplySender, which records what a platform
would have shown, and where a test needs it, an Answerer.
"""

from __future__ import annotations

import gc
import itertools
import time
import tracemalloc
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.console.files import LocalFileFetcher
from bot.core import text
from bot.core.dispatch import Dispatcher
from bot.core.handlers import JobHandler
from bot.core.model import Address, FileRef, Handle, Incoming, Job, PartialAnswer, Reply, Update, Working
from bot.core.ports import FileFetcher
from bot.core.runner import InProcessRunner
from bot.core.state import MemoryDeduplicator, MemoryRateLimiter, MemoryThreadMemory
from rag.answer import Answerer, DeltaCallback
from rag.engine import Engine
from rag.errors import RetryableError
from rag.prompt import citations_for
from rag.types import Answer, Passage, Turn
from tests.bot.doubles import ASK_HOW, FakeEmbedder, Outlet, Place, Shown

KB = "slack-T1"
VPN_GUIDE = (
    b"# VPN guide\n\nTo rotate the VPN certificate, open the Keychain app and delete the old certificate. "
    b"Then download the new certificate from the IT portal at it.example.com and double-click it.\n"
)
HOLIDAYS = b"# Holidays\n\nThe office is closed on the first Monday of August for the summer picnic.\n"


@dataclass
class Call:
    method: str  # "begin" | "update" | "finish"
    address: Address
    handle: Handle | None = None
    text: str = ""
    reply: Reply | None = None
    working: Working | None = None
    update: Update | None = None


class RecordingSender:
    """A ReplySender that remembers every call, in order, as a platform would have received them."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._ids = itertools.count(1)

    async def begin(self, address: Address, working: Working) -> Handle | None:
        handle = Shown(f"working-{next(self._ids)}")
        self.calls.append(Call("begin", address, handle, text=text.working(working), working=working))
        return handle

    async def update(self, address: Address, handle: Handle | None, update: Update) -> Handle | None:
        shown = update.text if isinstance(update, PartialAnswer) else ""
        self.calls.append(Call("update", address, handle, text=shown, update=update))
        return handle

    async def finish(self, address: Address, handle: Handle | None, reply: Reply) -> None:
        self.calls.append(Call("finish", address, handle, text=reply.text, reply=reply))

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    @property
    def replies(self) -> list[Reply]:
        return [c.reply for c in self.of("finish") if c.reply is not None]


class RecordingAnswerer:
    """An Answerer that cites every passage it is given and records what it was asked."""

    def __init__(self, *, stream: Sequence[str] = (), fail: Exception | None = None) -> None:
        self.questions: list[str] = []
        self.histories: list[list[Turn]] = []
        self._stream = stream
        self._fail = fail

    async def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
    ) -> Answer:
        self.questions.append(question)
        self.histories.append(list(history))
        if self._fail is not None:
            raise self._fail
        for partial in self._stream:
            if on_delta is not None:
                await on_delta(partial)
        return Answer(f"Answer {len(self.questions)} [1]", citations_for(passages[:1]), "llm")


class FailingFetcher:
    async def fetch(self, file: FileRef, *, max_bytes: int) -> bytes:
        raise RuntimeError("connection to 10.0.0.7 refused, token xoxb-secret-123")


@dataclass
class Bot:
    engine: Engine
    sender: RecordingSender
    dispatcher: Dispatcher
    runner: InProcessRunner
    tmp: Path

    async def say(
        self,
        message: str = "",
        *,
        user: str = "U1",
        direct: bool = False,
        thread: str = "C1:1000.1",
        event_id: str | None = None,
        files: Sequence[FileRef] = (),
    ) -> Job | None:
        incoming = Incoming(
            platform="slack",
            workspace=KB,
            user=user,
            text=message,
            event_id=event_id or f"Ev{uuid.uuid4().hex}",
            is_direct=direct,
            thread=thread,
            address=Place("D1" if direct else "C1", thread),
            files=tuple(files),
        )
        job = await self.dispatcher.handle(incoming)
        await self.runner.drain()
        return job

    def file(self, name: str, data: bytes) -> FileRef:
        path = self.tmp / "uploads" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return FileRef(name=name, size=len(data), url=str(path))

    async def document_names(self) -> list[str]:
        return [d.name for d in await self.engine.documents(KB)]


BotFactory = Callable[..., Bot]


@pytest.fixture
def make_bot(make_engine: Callable[..., Engine], tmp_path: Path) -> BotFactory:
    def factory(
        *,
        answerer: Answerer | None = None,
        fetcher: FileFetcher | None = None,
        per_minute: int = 600,
        burst: int = 100,
        admins: Collection[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> Bot:
        engine = make_engine(answerer=answerer, embedder=FakeEmbedder())  # no model to load
        sender = RecordingSender()
        platforms = {"slack": Outlet("slack", sender, fetcher or LocalFileFetcher())}
        memory = MemoryThreadMemory()
        handler = JobHandler(engine=engine, platforms=platforms, memory=memory, max_file_mb=10)
        runner = InProcessRunner(handler.run)
        dispatcher = Dispatcher(
            runner=runner,
            platforms=platforms,
            dedup=MemoryDeduplicator(),
            memory=memory,
            limiter=MemoryRateLimiter(per_minute=per_minute, burst=burst, clock=clock),
            kb_for=lambda workspace: workspace,
            admins=admins,
        )
        return Bot(engine, sender, dispatcher, runner, tmp_path)

    return factory


# -- asking --------------------------------------------------------------------------------------


async def test_a_question_shows_working_then_one_cited_answer_in_its_place(make_bot: BotFactory) -> None:
    bot = make_bot()
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE, uploader="U9")

    job = await bot.say("How do I rotate the VPN certificate?")

    assert job is not None and job.kind == "ask"
    assert [c.method for c in bot.sender.calls] == ["begin", "finish"]
    begin, finish = bot.sender.calls
    assert begin.text == text.THINKING
    assert finish.handle == begin.handle  # the working message is the one replaced
    assert finish.address == Place("C1", "C1:1000.1")
    reply = bot.sender.replies[0]
    assert reply.kind == "answer"
    assert "Keychain" in reply.text
    assert [c.document for c in reply.citations] == ["vpn.md"]
    assert reply.feedback


async def test_a_streamed_answer_edits_the_working_message_before_the_reply(make_bot: BotFactory) -> None:
    bot = make_bot(answerer=RecordingAnswerer(stream=["Open the Keychain"]))
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)

    await bot.say("How do I rotate the VPN certificate?")

    assert [c.method for c in bot.sender.calls] == ["begin", "update", "finish"]
    begin, update, finish = bot.sender.calls
    assert update.handle == begin.handle == finish.handle
    assert update.update == PartialAnswer("Open the Keychain")  # the sender adds a cursor if it shows one
    assert finish.text == "Answer 1 [1]"


async def test_an_empty_knowledge_base_says_it_found_nothing_rather_than_guess(make_bot: BotFactory) -> None:
    bot = make_bot()

    await bot.say("How do I rotate the VPN certificate?")

    (reply,) = bot.sender.replies
    assert reply.citations == ()
    assert not reply.feedback


async def test_the_same_event_delivered_twice_is_answered_once(make_bot: BotFactory) -> None:
    bot = make_bot()
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)

    first = await bot.say("How do I rotate the VPN certificate?", event_id="Ev42")
    again = await bot.say("How do I rotate the VPN certificate?", event_id="Ev42")

    assert first is not None
    assert again is None
    assert len(bot.sender.of("begin")) == 1
    assert len(bot.sender.of("finish")) == 1


async def test_too_many_questions_get_a_friendly_wait_and_no_job(make_bot: BotFactory) -> None:
    bot = make_bot(per_minute=1, burst=1, clock=lambda: 1000.0)  # time stands still: the wait is exact
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)

    assert await bot.say("How do I rotate the VPN certificate?") is not None
    refused = await bot.say("And where is the IT portal?")

    assert refused is None
    assert len(bot.sender.of("begin")) == 1  # no working message for the refused one
    last = bot.sender.replies[-1]
    assert last.text == text.RATE_LIMITED.format(seconds=60)
    assert last.kind == "error" and last.ephemeral
    # Another person is not held back by the first one's limit.
    assert await bot.say("Where is the IT portal?", user="U2") is not None


async def test_commands_are_not_rate_limited(make_bot: BotFactory) -> None:
    bot = make_bot(per_minute=1, burst=1)
    await bot.say("How do I rotate the VPN certificate?")

    job = await bot.say("docs")

    assert job is not None and job.kind == "command"
    assert bot.sender.replies[-1].text == text.NO_DOCUMENTS


async def test_commands_have_a_rate_limit_of_their_own(make_bot: BotFactory) -> None:
    bot = make_bot(per_minute=1, burst=1, clock=lambda: 1000.0)

    assert await bot.say("docs") is not None
    refused = await bot.say("forget old.md")

    assert refused is None
    last = bot.sender.replies[-1]
    assert last.text == text.COMMANDS_RATE_LIMITED.format(seconds=60)
    assert last.kind == "error" and last.ephemeral
    assert await bot.say("How do I rotate the VPN certificate?") is not None  # questions: their own bucket


_ROOT = Path(__file__).resolve().parents[2]
_OURS = (str(_ROOT / "bot"), str(_ROOT / "rag"), str(Path(__file__).resolve()))


async def test_memory_does_not_grow_with_the_names_people_try(make_bot: BotFactory) -> None:
    bot = make_bot()

    async def try_names(start: int, count: int) -> None:
        for i in range(start, start + count):
            name = f"{i:05d}" + "n" * 5000  # a long name, different each time
            await bot.say(f"forget {name}.md")
            await bot.say(user="U1", direct=True, files=[bot.file(f"{i:05d}.md", b"   ")])  # no text
            bot.sender.calls.clear()

    await try_names(0, 20)  # warm up: first-call caches, log set-up
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    await try_names(20, 300)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()

    # Counted where the bot's code (or this test, which makes the names) allocated it: threads that
    # earlier tests of the run left behind (a store's sweeper, a client's pool) allocate elsewhere.
    grown = sum(
        stat.size_diff
        for stat in after.compare_to(before, "filename")
        if stat.traceback[0].filename.startswith(_OURS)
    )
    # Each name kept its lock (and the name) before: 1.7 MB. What stays now is the dedup's event ids.
    assert grown < 600_000, f"{grown} bytes kept after 300 names"


async def test_an_empty_mention_is_asked_what_it_wants(make_bot: BotFactory) -> None:
    bot = make_bot()

    await bot.say("   ")

    assert bot.sender.replies[-1].text == text.EMPTY_QUESTION


async def test_a_follow_up_in_the_same_thread_gets_the_earlier_turns(make_bot: BotFactory) -> None:
    answerer = RecordingAnswerer()
    bot = make_bot(answerer=answerer)
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)

    await bot.say("How do I rotate the VPN certificate?", thread="C1:1")
    await bot.say("And where do I download it?", thread="C1:1")
    await bot.say("Where is the IT portal?", thread="C1:2")

    assert answerer.histories[0] == []
    assert answerer.histories[1] == [
        Turn("user", "How do I rotate the VPN certificate?"),
        Turn("assistant", "Answer 1 [1]"),
    ]
    assert answerer.histories[2] == []  # another thread starts afresh


# -- uploading -----------------------------------------------------------------------------------


async def test_files_posted_in_a_channel_are_refused_and_not_ingested(make_bot: BotFactory) -> None:
    bot = make_bot()

    job = await bot.say("", direct=False, files=[bot.file("vpn.md", VPN_GUIDE)])

    assert job is None
    assert bot.sender.of("begin") == []
    (reply,) = bot.sender.replies
    assert reply.text == text.FILES_ONLY_IN_DM
    assert reply.ephemeral
    assert await bot.document_names() == []


async def test_a_file_sent_in_a_dm_is_added(make_bot: BotFactory) -> None:
    bot = make_bot()

    job = await bot.say("", direct=True, files=[bot.file("vpn.md", VPN_GUIDE)])

    assert job is not None and job.kind == "ingest"
    assert bot.sender.of("begin")[0].text == text.READING.format(names="vpn.md")
    (reply,) = bot.sender.replies
    info = await bot.engine.document(KB, "vpn.md")
    assert info is not None and info.uploader == "U1"
    assert reply.kind == "info"
    assert f"Added *vpn.md*: {text.plural(info.chunks, 'passage')}" in reply.text


async def test_the_same_file_again_is_reported_unchanged(make_bot: BotFactory) -> None:
    bot = make_bot()
    await bot.say(direct=True, files=[bot.file("vpn.md", VPN_GUIDE)])

    await bot.say(direct=True, files=[bot.file("vpn.md", VPN_GUIDE)])

    assert "*vpn.md* is already in the knowledge base, unchanged" in bot.sender.replies[-1].text


async def test_two_files_in_one_message_are_reported_in_one_reply(make_bot: BotFactory) -> None:
    bot = make_bot()

    await bot.say(direct=True, files=[bot.file("vpn.md", VPN_GUIDE), bot.file("holidays.md", HOLIDAYS)])

    assert len(bot.sender.of("begin")) == 1
    assert bot.sender.of("begin")[0].text == text.READING.format(names="vpn.md, holidays.md")
    (reply,) = bot.sender.replies
    assert "Added *vpn.md*" in reply.text
    assert "Added *holidays.md*" in reply.text
    assert await bot.document_names() == ["holidays.md", "vpn.md"]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("setup.exe", b"MZ\x90\x00 not a document", ".exe files are not supported"),
        ("photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "does not look like a text file"),
        ("empty.md", b"", "is empty"),
    ],
)
async def test_a_rejected_file_gets_its_reason_and_the_knowledge_base_is_unchanged(
    make_bot: BotFactory, name: str, data: bytes, reason: str
) -> None:
    bot = make_bot()
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    before = await bot.engine.documents(KB)

    await bot.say(direct=True, files=[bot.file(name, data)])

    (reply,) = bot.sender.replies
    assert reply.kind == "error"
    assert name in reply.text
    assert reason in reply.text
    assert await bot.engine.documents(KB) == before


async def test_one_bad_file_does_not_stop_the_good_one(make_bot: BotFactory) -> None:
    bot = make_bot()

    await bot.say(direct=True, files=[bot.file("setup.exe", b"MZ"), bot.file("vpn.md", VPN_GUIDE)])

    (reply,) = bot.sender.replies
    assert reply.kind == "info"
    assert "Added *vpn.md*" in reply.text
    assert "⚠️ setup.exe" in reply.text
    assert await bot.document_names() == ["vpn.md"]


# -- commands ------------------------------------------------------------------------------------


async def test_docs_lists_the_uploaded_document_with_its_uploader(make_bot: BotFactory) -> None:
    bot = make_bot()
    await bot.say(user="U1", direct=True, files=[bot.file("vpn.md", VPN_GUIDE)])

    await bot.say("docs", user="U2")

    reply = bot.sender.replies[-1]
    assert reply.text.startswith("*1 document* in the knowledge base:")
    assert "`vpn.md`" in reply.text  # as code: the list shows names exactly as `forget` takes them
    assert "by U1" in reply.text
    assert len(bot.sender.of("begin")) == 1  # a command needs no working message


async def test_help_describes_how_to_ask_on_this_platform(make_bot: BotFactory) -> None:
    bot = make_bot()

    await bot.say("help")

    assert bot.sender.replies[-1].text == text.help_text(ASK_HOW, 10)
    assert "up to 10 MB" in bot.sender.replies[-1].text
    assert ASK_HOW in bot.sender.replies[-1].text


async def test_forget_without_a_name_explains_the_usage(make_bot: BotFactory) -> None:
    bot = make_bot()

    await bot.say("forget")

    assert bot.sender.replies[-1].text == text.FORGET_USAGE


async def test_forget_by_someone_else_is_denied_and_the_document_stays(make_bot: BotFactory) -> None:
    bot = make_bot()
    await bot.say(user="U1", direct=True, files=[bot.file("vpn.md", VPN_GUIDE)])

    await bot.say("forget vpn.md", user="U2")

    assert bot.sender.replies[-1].text == text.FORGET_DENIED.format(name="vpn.md", uploader="U1")
    assert await bot.document_names() == ["vpn.md"]


async def test_forget_by_the_uploader_deletes_the_document(make_bot: BotFactory) -> None:
    bot = make_bot()
    await bot.say(user="U1", direct=True, files=[bot.file("vpn.md", VPN_GUIDE)])
    chunks = (await bot.engine.documents(KB))[0].chunks

    await bot.say("forget vpn.md", user="U1")

    assert bot.sender.replies[-1].text == text.FORGOTTEN.format(
        name="vpn.md", passages=text.plural(chunks, "passage")
    )
    assert await bot.document_names() == []
    await bot.say("How do I rotate the VPN certificate?", user="U1")
    assert bot.sender.replies[-1].citations == ()  # no longer found in answers


async def test_forget_by_an_admin_deletes_someone_elses_document(make_bot: BotFactory) -> None:
    bot = make_bot(admins=["UADMIN"])
    await bot.say(user="U1", direct=True, files=[bot.file("vpn.md", VPN_GUIDE)])

    await bot.say("forget vpn.md", user="UADMIN")

    assert bot.sender.replies[-1].text.startswith("Deleted *vpn.md*")
    assert await bot.document_names() == []


async def test_forget_of_an_unknown_document_says_so(make_bot: BotFactory) -> None:
    bot = make_bot()

    await bot.say("forget nothing.md")

    reply = bot.sender.replies[-1]
    assert reply.kind == "error"
    assert "no document called `nothing.md`" in reply.text


# -- failures ------------------------------------------------------------------------------------


async def test_an_internal_error_gets_an_apology_with_a_ref_and_never_the_exception(
    make_bot: BotFactory,
) -> None:
    bot = make_bot(answerer=RecordingAnswerer(fail=RuntimeError("pool exhausted, password=hunter2")))
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)

    await bot.say("How do I rotate the VPN certificate?", event_id="Ev0123456789ABCDEF")

    (finish,) = bot.sender.of("finish")
    assert finish.handle == bot.sender.of("begin")[0].handle
    assert finish.text == text.INTERNAL_ERROR.format(doing="answering", ref="Ev0123456789")
    assert "hunter2" not in finish.text and "RuntimeError" not in finish.text


async def test_a_reply_the_platform_cannot_show_is_replaced_by_the_apology(make_bot: BotFactory) -> None:
    bot = make_bot()
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)
    shown = bot.sender.finish

    async def refuse_answers(address: Address, handle: Handle | None, reply: Reply) -> None:
        if reply.kind == "answer":
            raise ValueError("the renderer choked on this passage")
        await shown(address, handle, reply)

    bot.sender.finish = refuse_answers  # type: ignore[method-assign]
    await bot.say("How do I rotate the VPN certificate?", event_id="Ev0123456789ABCDEF")

    (finish,) = bot.sender.of("finish")
    assert finish.handle == bot.sender.of("begin")[0].handle  # the working message ends
    assert finish.text == text.INTERNAL_ERROR.format(doing="answering", ref="Ev0123456789")


async def test_a_retryable_failure_in_process_still_gets_a_reply(make_bot: BotFactory) -> None:
    # In-process there is no queue to retry on: the user must not be left with "Searching…".
    bot = make_bot(answerer=RecordingAnswerer(fail=RetryableError("Groq 503")))
    await bot.engine.ingest(KB, "vpn.md", VPN_GUIDE)

    await bot.say("How do I rotate the VPN certificate?", event_id="Ev0123456789ABCDEF")

    (finish,) = bot.sender.of("finish")
    assert finish.text == text.INTERNAL_ERROR.format(doing="answering", ref="Ev0123456789")


async def test_a_file_that_cannot_be_fetched_gets_an_apology_and_nothing_is_ingested(
    make_bot: BotFactory,
) -> None:
    bot = make_bot(fetcher=FailingFetcher())

    await bot.say(direct=True, event_id="EvFETCHFAILED00", files=[bot.file("vpn.md", VPN_GUIDE)])

    (reply,) = bot.sender.replies
    assert reply.kind == "error"
    assert reply.text == "⚠️ " + text.FILE_FAILED.format(name="vpn.md", ref="EvFETCHFAILE")
    assert "refused" not in reply.text and "xoxb" not in reply.text
    assert await bot.document_names() == []


async def test_a_queue_worker_gets_the_retryable_failure_back_to_retry_the_job(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(answerer=RecordingAnswerer(fail=RetryableError("Groq 503")), embedder=FakeEmbedder())
    await engine.ingest(KB, "vpn.md", VPN_GUIDE)
    sender = RecordingSender()
    handler = JobHandler(
        engine=engine,
        platforms={"slack": Outlet("slack", sender)},
        memory=MemoryThreadMemory(),
        max_file_mb=10,
    )
    job = Job(
        id="Ev1",
        kind="ask",
        platform="slack",
        kb=KB,
        user="U1",
        text="How do I rotate the VPN certificate?",
        thread="C1:1",
        address=Place("C1"),
    )

    with pytest.raises(RetryableError):
        await handler.run(job, last_try=False)
    assert sender.calls == []  # the retry will reply; no apology now
