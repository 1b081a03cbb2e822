"""Scopes in the engine: a question reads only the documents its place may see, filtered inside the
store and the keyword index (never crowded out by documents it may not see); answers are cached per
visibility; a new scope for the same bytes is written without embedding again; documents stored
before scopes are workspace documents."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from rag.answer import DeltaCallback
from rag.chroma import ChromaStore
from rag.chroma.store import collection_base
from rag.documents import NotYourDocument
from rag.keyword import KeywordIndex
from rag.prompt import citations_for
from rag.scopes import EVERYTHING, WORKSPACE, Visibility, channel_scope, private_scope
from rag.types import Answer, Chunk, Passage, Turn, Upload
from tests.conftest import EngineFactory

KB = "kb-scopes"
C1, C2 = channel_scope("C1"), channel_scope("C2")
MINE = private_scope("U1")
QUESTION = "How many vacation days do new employees get?"


def policy(who: str, days: int) -> bytes:
    text = f"# Vacation policy of {who}\n\nNew employees get {days} vacation days in their first year.\n"
    return text.encode()


async def _three_places(engine: object) -> None:
    uploads = [
        Upload("workspace.md", policy("the company", 25), uploader="U9"),
        Upload("sales.md", policy("the sales team", 30), uploader="U9", scope=C1),
        Upload("mine.md", policy("my own draft", 99), uploader="U1", scope=MINE),
    ]
    await engine.ingest_many(KB, uploads)  # type: ignore[attr-defined]


async def test_a_question_reads_only_what_its_place_may_see(make_engine: EngineFactory) -> None:
    engine = make_engine()
    await _three_places(engine)

    async def seen(visibility: Visibility) -> set[str]:
        return {p.document for p in await engine.search(KB, QUESTION, top_k=10, visibility=visibility)}

    assert await seen(Visibility()) == {"workspace.md"}  # the default: the workspace's only
    assert await seen(Visibility.of(C1)) == {"workspace.md", "sales.md"}
    assert await seen(Visibility.of(C2)) == {"workspace.md"}
    assert await seen(Visibility.of(MINE)) == {"workspace.md", "mine.md"}
    assert await seen(EVERYTHING) == {"workspace.md", "sales.md", "mine.md"}
    answer = await engine.ask(KB, QUESTION, visibility=Visibility.of(C2))
    assert "99 vacation" not in answer.text and "30 vacation" not in answer.text
    assert {c.document for c in answer.citations} == {"workspace.md"}
    listed = await engine.documents(KB, visibility=Visibility.of(MINE))
    assert [(d.name, d.scope) for d in listed] == [("mine.md", MINE), ("workspace.md", WORKSPACE)]


async def test_documents_a_place_may_not_see_never_crowd_out_the_ones_it_may(
    make_engine: EngineFactory, store: ChromaStore
) -> None:
    """Seventy channel documents, more than a search's candidates, all nearer the question than the
    one workspace document about it: a search from another place still finds the workspace
    document, because the store filters before it ranks (filtering after would leave nothing)."""
    engine = make_engine()
    await engine.ingest(KB, "handbook.md", b"# Handbook\n\nThe office wifi password rotates monthly.\n")
    text = "What does ERR_VPN_77 mean? ERR_VPN_77 means the VPN gateway rejected the client certificate."
    for n in range(70):
        await engine.ingest(KB, f"c{n}.md", f"# Note {n}\n\n{text}\n".encode(), scope=channel_scope(f"C{n}"))
    far = "Printer log: code ERR_VPN_77 shows up on the third floor printer after a power cut."
    await engine.ingest(KB, "wifi.md", f"# Wifi\n\n{far}\n".encode())

    elsewhere = Visibility.of(channel_scope("C99"))
    question = "What does ERR_VPN_77 mean?"
    found = await engine.search(KB, question, top_k=3, visibility=elsewhere)
    by_vector = await engine.search(KB, question, top_k=3, hybrid=False, visibility=elsewhere)

    assert {p.document for p in found} <= {"handbook.md", "wifi.md"} and found[0].document == "wifi.md"
    assert by_vector and by_vector[0].document == "wifi.md"
    near = await engine.search(
        KB, "What does ERR_VPN_77 mean?", top_k=3, visibility=Visibility.of("channel:C7")
    )
    assert {p.document for p in near} == {"c7.md", "wifi.md", "handbook.md"}  # its own, no other channel's


class _Model:
    """A language model that cites every passage it is given."""

    def __init__(self) -> None:
        self.calls = 0

    async def answer(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        history: Sequence[Turn] = (),
        on_delta: DeltaCallback | None = None,
    ) -> Answer:
        self.calls += 1
        return Answer(f"Answer {self.calls} [1]", citations_for(passages), "llm")


async def test_an_answer_is_cached_per_visibility_and_never_served_to_a_place_that_may_not_see_it(
    make_engine: EngineFactory,
) -> None:
    model = _Model()
    engine = make_engine(answerer=model)
    await _three_places(engine)

    in_sales = await engine.ask(KB, QUESTION, visibility=Visibility.of(C1))
    elsewhere = await engine.ask(KB, QUESTION, visibility=Visibility.of(C2))
    again = await engine.ask(KB, QUESTION, visibility=Visibility.of(C1))

    assert "sales.md" in {c.document for c in in_sales.citations}
    assert not elsewhere.cached and "sales.md" not in {c.document for c in elsewhere.citations}
    assert again.cached and again.text == in_sales.text
    # A place that sees what the workspace sees (no channel documents of its own) shares its cache.
    assert (await engine.ask(KB, QUESTION, visibility=Visibility.of("channel:C3"))).cached
    assert model.calls == 2


async def test_the_same_bytes_with_another_scope_change_it_without_embedding_again(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    first = await engine.ingest(KB, "sales.md", policy("the sales team", 30), uploader="U1", scope=C1)
    (before,) = await engine.documents(KB)

    again = await engine.ingest(KB, "sales.md", policy("the sales team", 30), uploader="U1")  # scope kept
    moved = await engine.ingest(KB, "sales.md", policy("the sales team", 30), uploader="U1", scope=WORKSPACE)

    (after,) = await engine.documents(KB)
    assert first.status == "added" and again.status == "unchanged" and moved.status == "rescoped"
    assert moved.embedded == 0 and after.version == before.version and after.scope == WORKSPACE
    found = await engine.search(KB, QUESTION, visibility=Visibility())
    assert [p.document for p in found] == ["sales.md"]


async def test_documents_stored_before_scopes_are_workspace_documents(
    make_engine: EngineFactory, store: ChromaStore
) -> None:
    """A manifest written by the version before scopes: its entries have no scope."""
    engine = make_engine()
    await engine.ingest(KB, "old.md", policy("the company", 25))
    docs = store._client.get_collection(collection_base("test", KB) + ".docs")
    got = docs.get(include=["metadatas"])
    docs.delete(ids=got["ids"])  # written again without the key (an update would keep it)
    unscoped = [{k: v for k, v in m.items() if k != "scope"} for m in got["metadatas"]]
    docs.add(ids=got["ids"], embeddings=[[1.0]] * len(unscoped), metadatas=unscoped)
    assert all("scope" not in m for m in docs.get(include=["metadatas"])["metadatas"])

    fresh = make_engine(store=ChromaStore(store._client, prefix="test"))  # started after the upgrade
    found = await fresh.search(KB, QUESTION, visibility=Visibility.of(C1))

    assert [p.document for p in found] == ["old.md"]
    assert [(d.name, d.scope) for d in await fresh.documents(KB, visibility=Visibility())] == [
        ("old.md", WORKSPACE)
    ]


def test_the_keyword_index_ranks_only_the_rows_it_may_return() -> None:
    index = KeywordIndex.from_texts(["a:0", "b:0", "c:0"], ["vpn vpn vpn error", "vpn error", "kitchen"])
    assert [cid for cid, _ in index.search("vpn error", 1)] == ["a:0"]
    assert [cid for cid, _ in index.search("vpn error", 1, rows=np.array([False, True, True]))] == ["b:0"]
    assert index.search("vpn", 5, rows=np.array([False, False, True])) == []


async def test_a_new_scope_takes_effect_at_once_in_another_process(
    make_engine: EngineFactory, store: ChromaStore
) -> None:
    """Two engines on one store, as a worker and a serve on one Chroma: a scope changed by one is
    what the other's next question sees, its keyword index, views and query cache included."""
    model = _Model()
    here, there = make_engine(), make_engine(store=ChromaStore(store._client, prefix="test"), answerer=model)
    await here.ingest(KB, "sales.md", policy("the sales team", 30), uploader="U1", scope=C1)
    elsewhere = Visibility.of(C2)
    assert await there.search(KB, QUESTION, visibility=elsewhere) == []
    assert not (await there.ask(KB, QUESTION, visibility=elsewhere)).citations  # nothing to cite

    await here.ingest(KB, "sales.md", policy("the sales team", 30), uploader="U1", scope=WORKSPACE)

    assert [p.document for p in await there.search(KB, QUESTION, visibility=elsewhere)] == ["sales.md"]
    answer = await there.ask(KB, QUESTION, visibility=elsewhere)
    assert not answer.cached and [c.document for c in answer.citations] == ["sales.md"]
    await here.ingest(KB, "sales.md", policy("the sales team", 30), uploader="U1", scope=MINE)
    assert await there.search(KB, QUESTION, visibility=elsewhere) == []
    assert not (await there.ask(KB, QUESTION, visibility=elsewhere)).citations  # no cached answer either


def _unit(rng: np.random.Generator, toward: np.ndarray, spread: float) -> np.ndarray:
    v = toward + rng.normal(scale=spread, size=toward.shape)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_a_search_within_most_of_the_collection_returns_its_nearest_however_near_the_others_are(
    store: ChromaStore,
) -> None:
    """A place's documents hold a third of the collection (the deeper unfiltered search): every
    chunk of the others is nearer the question than any of its own, so that search keeps none of
    them; the place's nearest chunks come back all the same (else its question finds nothing)."""
    rng = np.random.default_rng(7)
    axis, aside = np.eye(8, dtype=np.float32)[0], np.eye(8, dtype=np.float32)[1]
    for version, count, toward in [("theirs", 1500, axis), ("mine", 700, 0.3 * axis + aside)]:
        chunks = [Chunk(f"{version} {i}", i) for i in range(count)]
        vectors = np.stack([_unit(rng, toward, 0.02) for _ in range(count)])
        store.add_chunks(
            KB, document=f"{version}.md", version=version, chunks=chunks, embeddings=vectors, url=None
        )

    found = store.nearest(KB, axis, 10, within={"mine": 700})

    assert len(found) == 10 and {cid.split(":")[0] for cid, _ in found} == {"mine"}
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)


async def test_only_the_uploader_or_a_trusted_upload_changes_a_documents_scope(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine()
    await engine.ingest(KB, "mine.md", policy("my own draft", 99), uploader="U1", scope=MINE)

    with pytest.raises(NotYourDocument):
        await engine.ingest(KB, "mine.md", policy("my own draft", 99), uploader="U2", scope=WORKSPACE)
    assert [d.scope for d in await engine.documents(KB)] == [MINE]
    assert await engine.search(KB, QUESTION, visibility=Visibility()) == []

    trusted = await engine.ingest(
        KB, "mine.md", policy("my own draft", 99), uploader="op", trusted=True, scope=C1
    )
    (doc,) = await engine.documents(KB)
    assert trusted.status == "rescoped" and doc.scope == C1 and doc.uploader == "U1"
    with pytest.raises(ValueError):
        await engine.ingest(KB, "other.md", b"# Other\n\ntext\n", uploader="U1", scope="channel:")
