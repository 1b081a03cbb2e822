"""The engine end to end on the real model and a real embedded Chroma."""

from __future__ import annotations

import asyncio
import io
import threading
import zipfile
from typing import Any

import numpy as np
import pytest
from pypdf import PdfWriter

from rag.chroma import ChromaStore
from rag.errors import UserFacingError
from rag.types import Chunk, Upload
from tests.conftest import EngineFactory
from tests.fakes.groq_server import FakeGroq

KB = "kb-test"
VPN = (
    b"# VPN guide\n\n## Certificates\n\nThe VPN client certificate expires every 90 days. Renew it from the "
    b"self-service portal under Security > Certificates.\n\n## Errors\n\nERR_CONN_4021 means the TLS "
    b"certificate of the VPN gateway was rejected. Update the client to 5.2 or later.\n"
)
PETS = b"Office pets policy.\n\nDogs are welcome in the office on Fridays if they are house-trained.\n"


async def _state(engine: Any) -> tuple[list[tuple[str, str]], int]:
    docs = await engine.documents(KB)
    return [(d.name, d.sha256) for d in docs], (await engine.stats(KB)).chunks


async def test_ingest_then_ask_cites_the_document(make_engine: EngineFactory) -> None:
    engine = make_engine()
    result = await engine.ingest(KB, "vpn.md", VPN, uploader="U1")
    assert result.status == "added" and result.chunks >= 2
    answer = await engine.ask(KB, "How often does the VPN certificate expire?")
    assert answer.mode == "extractive"
    assert "90 days" in answer.text
    assert answer.citations[0].document == "vpn.md"
    assert "Certificates" in answer.citations[0].locator


async def test_identifiers_are_found_exactly(make_engine: EngineFactory) -> None:
    engine = make_engine()
    await engine.ingest(KB, "vpn.md", VPN)
    await engine.ingest(KB, "pets.txt", PETS)
    passages = await engine.search(KB, "ERR_CONN_4021")
    assert passages and "ERR_CONN_4021" in passages[0].text


async def test_unrelated_question_says_not_found(make_engine: EngineFactory) -> None:
    engine = make_engine()
    await engine.ingest(KB, "pets.txt", PETS)
    answer = await engine.ask(KB, "What was the quarterly revenue of the semiconductor division?")
    assert answer.mode == "not_found" and not answer.citations
    assert "couldn't find" in answer.text


async def test_answer_speaks_the_language_of_the_question(make_engine: EngineFactory) -> None:
    engine = make_engine()
    await engine.ingest(KB, "vpn.md", VPN)
    answer = await engine.ask(KB, "Wie oft läuft das Zertifikat für das VPN ab?")
    assert answer.language == "de"
    assert "Dokumenten" in answer.text


async def test_identical_bytes_are_a_no_op(make_engine: EngineFactory, embedder: Any) -> None:
    engine = make_engine()
    await engine.ingest(KB, "vpn.md", VPN)
    before = await _state(engine)
    embedded = embedder.embedded_texts
    again = await engine.ingest(KB, "vpn.md", VPN)
    assert again.status == "unchanged"
    assert await _state(engine) == before
    assert embedder.embedded_texts == embedded  # nothing embedded twice


async def test_changed_file_replaces_the_old_version(make_engine: EngineFactory) -> None:
    engine = make_engine()
    await engine.ingest(KB, "vpn.md", VPN)
    new = VPN.replace(b"90 days", b"30 days")
    result = await engine.ingest(KB, "vpn.md", new)
    assert result.status == "replaced"
    assert result.embedded == 1  # only the changed chunk; the unchanged one's vector is reused
    docs, chunks = await _state(engine)
    assert len(docs) == 1 and chunks == result.chunks
    texts = " ".join(p.text for p in await engine.search(KB, "How often does the certificate expire?"))
    assert "30 days" in texts and "90 days" not in texts


class _PausingStore(ChromaStore):
    """Holds an ingest between writing the new chunks and activating them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written = threading.Event()
        self.proceed = threading.Event()

    def activate(self, kb: str, info: Any) -> None:
        self.written.set()
        assert self.proceed.wait(30)
        super().activate(kb, info)


async def test_replacement_is_atomic_for_searches(make_engine: EngineFactory, tmp_path: Any) -> None:
    from rag.chroma import open_client

    store = _PausingStore(open_client(persist_directory=str(tmp_path / "c"), host=None, port=0), prefix="t")
    engine = make_engine(store=store)
    store.proceed.set()
    await engine.ingest(KB, "vpn.md", VPN)
    store.proceed.clear()
    store.written.clear()
    task = asyncio.create_task(engine.ingest(KB, "vpn.md", VPN.replace(b"90 days", b"45 days")))
    assert await asyncio.to_thread(store.written.wait, 30)
    # New chunks are in Chroma now, but not active: searches see exactly the old version.
    during = " ".join(p.text for p in await engine.search(KB, "certificate expires days", top_k=10))
    assert "90 days" in during and "45 days" not in during
    store.proceed.set()
    await task
    after = " ".join(p.text for p in await engine.search(KB, "certificate expires days", top_k=10))
    assert "45 days" in after and "90 days" not in after


class _FailingStore(ChromaStore):
    def add_chunks(self, kb: str, **kwargs: Any) -> None:
        super().add_chunks(kb, **kwargs)  # the chunks are written…
        raise RuntimeError("disk full")  # …and then the ingest dies before activation


async def test_failure_mid_ingest_leaves_the_kb_as_it_was(make_engine: EngineFactory, tmp_path: Any) -> None:
    from rag.chroma import open_client

    client = open_client(persist_directory=str(tmp_path / "c"), host=None, port=0)
    good = make_engine(store=ChromaStore(client, prefix="t"))
    await good.ingest(KB, "vpn.md", VPN)
    before = await _state(good)
    failing = make_engine(store=_FailingStore(client, prefix="t"))
    with pytest.raises(RuntimeError):
        await failing.ingest(KB, "vpn.md", VPN.replace(b"90 days", b"12 days"))
    with pytest.raises(RuntimeError):
        await failing.ingest(KB, "new.txt", PETS)
    assert await _state(good) == before
    texts = " ".join(p.text for p in await good.search(KB, "certificate expire days dogs", top_k=10))
    assert "90 days" in texts and "12 days" not in texts and "Dogs" not in texts


def _encrypted_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(64):  # 64 MB of zeros: over 20x the 2 MB limit used below
                member.write(block)
    return out.getvalue()


BAD_INPUTS = [
    ("huge.txt", b"a" * (2 * 1024 * 1024 + 1), "limit"),
    ("photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "PNG"),
    ("empty.md", b"", "empty"),
    ("blank.txt", b"   \n\n  ", "text"),
    ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage without xref", "PDF"),
    ("locked.pdf", None, "password"),
    ("bomb.docx", None, "MB"),
    ("tool.exe", b"MZ\x90\x00", "not supported"),
]


@pytest.mark.parametrize(("name", "data", "reason"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_bad_input_gets_a_clear_error_and_changes_nothing(
    make_engine: EngineFactory, name: str, data: bytes | None, reason: str
) -> None:
    engine = make_engine(max_bytes=2 * 1024 * 1024)
    await engine.ingest(KB, "vpn.md", VPN)
    before = await _state(engine)
    payload = data if data is not None else (_encrypted_pdf() if name.endswith(".pdf") else _zip_bomb())
    with pytest.raises(UserFacingError) as err:
        await engine.ingest(KB, name, payload)
    assert name in err.value.message and reason.lower() in err.value.message.lower()
    assert "Traceback" not in err.value.message
    assert await _state(engine) == before


async def test_forget_removes_the_document_from_answers(make_engine: EngineFactory) -> None:
    engine = make_engine()
    await engine.ingest(KB, "vpn.md", VPN)
    await engine.ingest(KB, "pets.txt", PETS)
    info = await engine.forget(KB, "vpn.md")
    assert info.name == "vpn.md"
    assert [d.name for d in await engine.documents(KB)] == ["pets.txt"]
    assert all(p.document != "vpn.md" for p in await engine.search(KB, "VPN certificate", top_k=10))
    with pytest.raises(UserFacingError, match=r"no document called vpn\.md"):
        await engine.forget(KB, "vpn.md")


async def test_knowledge_bases_are_isolated(make_engine: EngineFactory) -> None:
    engine = make_engine()
    await engine.ingest("slack-T1", "vpn.md", VPN)
    assert await engine.search("slack-T2", "VPN certificate") == []
    assert (await engine.ask("slack-T2", "VPN certificate?")).mode == "not_found"


async def test_query_cache_hits_until_the_kb_changes(make_engine: EngineFactory) -> None:
    from rag.answer import ExtractiveAnswerer, GroqAnswerer

    async with FakeGroq() as fake:
        fake.enqueue_answer("Every 90 days [1].")
        fake.enqueue_answer("Every 30 days [1].")
        answerer = GroqAnswerer(
            api_key="k",
            model="m",
            base_url=fake.base_url,
            timeout_s=5,
            max_retries=0,
            fallback=ExtractiveAnswerer(reason="unavailable"),
        )
        engine = make_engine(answerer=answerer)
        await engine.ingest(KB, "vpn.md", VPN)
        first = await engine.ask(KB, "How often does the VPN certificate expire?")
        again = await engine.ask(KB, "How often does the VPN certificate expire?")
        assert first.text == again.text == "Every 90 days [1]." and again.cached and not first.cached
        assert len(fake.requests) == 1
        await engine.ingest(KB, "vpn.md", VPN.replace(b"90 days", b"30 days"))
        changed = await engine.ask(KB, "How often does the VPN certificate expire?")
        assert changed.text == "Every 30 days [1]." and not changed.cached
        assert len(fake.requests) == 2
        await answerer.aclose()


async def test_leftovers_of_a_killed_ingest_are_swept_at_start(
    make_engine: EngineFactory, tmp_path: Any
) -> None:
    from rag.chroma import open_client

    client = open_client(persist_directory=str(tmp_path / "c"), host=None, port=0)
    engine = make_engine(store=ChromaStore(client, prefix="t", exclusive=True))
    await engine.ingest(KB, "vpn.md", VPN)
    active = (await engine.stats(KB)).chunks
    # What a process killed between writing chunks and activating them leaves behind (kill -9 runs
    # no cleanup): chunks of a version no manifest names.
    vector = np.ones((1, 384), dtype=np.float32) / np.sqrt(384)
    store = ChromaStore(client, prefix="t", exclusive=True)
    store.add_chunks(
        KB, document="x.txt", version="deadbeef", chunks=[Chunk("orphan", 0)], embeddings=vector, url=None
    )
    assert store.chunk_count(KB) == active + 1
    shared = make_engine(store=ChromaStore(client, prefix="t", exclusive=False))
    assert await shared.sweep() == 0  # on a shared server it may be another worker's ingest: never
    assert await engine.sweep() == 1
    assert store.chunk_count(KB) == active
    assert [d.name for d in await engine.documents(KB)] == ["vpn.md"]


async def test_large_results_are_read_in_pages(
    make_engine: EngineFactory, store: ChromaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Chroma refuses one statement over ~32k variables; reading a big KB must page. Shrink the page.
    monkeypatch.setattr("rag.chroma.store._PAGE", 2)
    engine = make_engine()
    for name in ("a.md", "b.md", "c.md"):
        await engine.ingest(KB, name, VPN.replace(b"VPN guide", name.encode()))
    assert [d.name for d in await engine.documents(KB)] == ["a.md", "b.md", "c.md"]
    texts, vectors = store.all_chunks(KB)
    assert len(texts) == len(vectors) == (await engine.stats(KB)).chunks > 2
    hits = await engine.search(KB, "ERR_CONN_4021", top_k=10)
    assert {p.document for p in hits} == {"a.md", "b.md", "c.md"}  # the keyword index saw every page


async def test_keyword_index_follows_replacements(make_engine: EngineFactory) -> None:
    engine = make_engine()
    await engine.ingest(KB, "codes.md", b"# Codes\n\nQX_7731 means the badge reader is offline.\n")
    await engine.ingest(KB, "pets.txt", PETS)
    assert "QX_7731" in (await engine.search(KB, "QX_7731"))[0].text
    await engine.ingest(KB, "codes.md", b"# Codes\n\nZV_1402 means the badge reader is offline.\n")
    assert "ZV_1402" in (await engine.search(KB, "ZV_1402"))[0].text
    assert all("QX_7731" not in p.text for p in await engine.search(KB, "QX_7731", top_k=10))


# -- several files at once (threadwise ingest DIR) --------------------------------------------------

FAQ = b"# Parking FAQ\n\nVisitors park on level -2. Badges for the garage are issued at reception.\n"


def _spy_embed(embedder: Any, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = embedder.embed

    def spy(texts: Any, progress: Any = None) -> Any:
        calls.append(list(texts))
        return real(texts, progress=progress)

    monkeypatch.setattr(embedder, "embed", spy)
    return calls


async def test_batch_ingest_embeds_the_files_together_and_answers_for_each(
    make_engine: EngineFactory, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine()
    await engine.ingest(KB, "pets.txt", PETS)
    calls = _spy_embed(embedder, monkeypatch)
    heard: list[Any] = []
    uploads = [
        Upload("vpn.md", VPN, uploader="U1"),
        Upload("photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256))),
        Upload("pets.txt", PETS),
        Upload("faq.md", FAQ, uploader="U2"),
    ]
    outcomes = await engine.ingest_many(KB, uploads, on_result=heard.append)

    assert [getattr(o, "status", None) for o in outcomes] == ["added", None, "unchanged", "added"]
    assert isinstance(outcomes[1], UserFacingError) and "photo.txt" in outcomes[1].message
    # Heard as each finished: the refused and the unchanged file at once, the others once embedded.
    assert [getattr(o, "status", None) for o in heard] == [None, "unchanged", "added", "added"]
    # vpn.md and faq.md are embedded in one pass, shortest text first; pets.txt is not embedded again.
    assert len(calls) == 1 and calls[0] == sorted(calls[0], key=len)
    assert any("Parking" in t for t in calls[0]) and any("ERR_CONN_4021" in t for t in calls[0])
    assert not any("Dogs" in t for t in calls[0])
    docs = {d.name: d for d in await engine.documents(KB)}
    assert set(docs) == {"vpn.md", "pets.txt", "faq.md"}
    assert docs["vpn.md"].uploader == "U1" and docs["faq.md"].uploader == "U2"
    assert (await engine.search(KB, "Where do visitors park?"))[0].document == "faq.md"
    assert (await engine.search(KB, "ERR_CONN_4021"))[0].document == "vpn.md"


async def test_batch_ingest_of_one_name_twice_keeps_the_last(make_engine: EngineFactory) -> None:
    engine = make_engine()
    new = VPN.replace(b"90 days", b"60 days")
    outcomes = await engine.ingest_many(KB, [Upload("vpn.md", VPN), Upload("vpn.md", new)])
    assert [getattr(o, "status", None) for o in outcomes] == ["added", "replaced"]
    (doc,) = await engine.documents(KB)
    assert doc.chunks == (await engine.stats(KB)).chunks  # no chunk of the first version is left
    texts = " ".join(p.text for p in await engine.search(KB, "certificate expires days", top_k=10))
    assert "60 days" in texts and "90 days" not in texts


async def test_batch_groups_are_bounded(
    make_engine: EngineFactory, embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine()
    calls = _spy_embed(embedder, monkeypatch)
    uploads = [Upload("vpn.md", VPN), Upload("pets.txt", PETS), Upload("faq.md", FAQ)]
    await engine.ingest_many(KB, uploads, group_chunks=1)  # every document is a group of its own
    assert len(calls) == 3
    assert len(await engine.documents(KB)) == 3


async def test_a_store_failure_in_a_batch_keeps_finished_documents_whole(
    make_engine: EngineFactory, tmp_path: Any
) -> None:
    from rag.chroma import open_client

    class FailOnFaq(ChromaStore):
        def add_chunks(self, kb: str, **kwargs: Any) -> None:
            super().add_chunks(kb, **kwargs)
            if kwargs["document"] == "faq.md":
                raise RuntimeError("disk full")

    client = open_client(persist_directory=str(tmp_path / "c"), host=None, port=0)
    engine = make_engine(store=FailOnFaq(client, prefix="t"))
    uploads = [Upload("vpn.md", VPN), Upload("faq.md", FAQ), Upload("pets.txt", PETS)]
    with pytest.raises(RuntimeError, match="disk full"):
        await engine.ingest_many(KB, uploads)
    assert [d.name for d in await engine.documents(KB)] == ["vpn.md"]
    assert (await engine.stats(KB)).chunks == (await engine.documents(KB))[0].chunks  # nothing half-written
    # Every document's lock was released: the same engine takes the same names again.
    again = await asyncio.wait_for(engine.ingest_many(KB, [uploads[2], uploads[0]]), 60)
    assert [getattr(o, "status", None) for o in again] == ["added", "unchanged"]


async def test_a_knowledge_base_dropped_and_refilled_by_another_process_is_seen_here(
    make_engine: EngineFactory, tmp_path: Any
) -> None:
    from rag.chroma import open_client

    client = open_client(persist_directory=str(tmp_path / "c"), host=None, port=0)
    here = make_engine(store=ChromaStore(client, prefix="t"))
    other = make_engine(store=ChromaStore(client, prefix="t"))  # its own collection handles
    await here.ingest(KB, "vpn.md", VPN)
    assert (await here.search(KB, "ERR_CONN_4021"))[0].document == "vpn.md"

    await other.drop(KB)  # `threadwise forget --kb` elsewhere: the collections are deleted
    await other.ingest(KB, "pets.txt", PETS)  # and made anew

    assert [d.name for d in await here.documents(KB)] == ["pets.txt"]
    assert (await here.search(KB, "Are dogs allowed in the office?"))[0].document == "pets.txt"
    assert await here.search(KB, "ERR_CONN_4021") == []
    await here.ingest(KB, "vpn.md", VPN)  # writes go to the new collections too
    assert {d.name for d in await other.documents(KB)} == {"vpn.md", "pets.txt"}


async def test_a_chosen_passage_deleted_behind_the_searchs_back_is_left_out(
    make_engine: EngineFactory, store: ChromaStore
) -> None:
    """Searches rank chunk ids and read only the passages they keep: one whose chunks went from the
    store after the search's view of the manifest was made is skipped and the next passage taken."""
    engine = make_engine()
    await engine.ingest(KB, "vpn.md", VPN)
    await engine.ingest(KB, "pets.txt", PETS)
    question = "May dogs come to the office on Fridays, and when does the VPN certificate expire?"
    before = await engine.search(KB, question, top_k=10)
    assert {p.document for p in before} == {"vpn.md", "pets.txt"}
    vpn = next(d for d in await engine.documents(KB) if d.name == "vpn.md")
    store.delete_version(KB, vpn.version)  # the manifest still names it: the view is as it was
    after = await engine.search(KB, question, top_k=10)
    assert [p.document for p in after] == ["pets.txt"] * len(after) and after
    assert [p.chunk_id for p in after] == [p.chunk_id for p in before if p.document == "pets.txt"]
