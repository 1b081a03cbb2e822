"""Fusion and the spread of passages over documents."""

from __future__ import annotations

from rag.search import fuse, spread
from rag.store import StoredChunk


def _hit(cid: str, document: str) -> StoredChunk:
    return StoredChunk(id=cid, text=cid, document=document, version="v", locator="", url=None)


def test_fusion_rewards_agreement() -> None:
    scores = fuse([["a", "b", "c"], ["c", "d"]])
    assert max(scores, key=scores.__getitem__) == "c"  # second and first beats first alone
    assert set(scores) == {"a", "b", "c", "d"}


def test_spread_caps_one_document_while_others_qualify() -> None:
    hits = [
        _hit("a1", "A"),
        _hit("a2", "A"),
        _hit("a3", "A"),
        _hit("b1", "B"),
        _hit("a4", "A"),
        _hit("c1", "C"),
    ]
    chosen = spread(hits, top_k=4, per_document=2)
    assert [h.id for h in chosen] == ["a1", "a2", "b1", "c1"]


def test_spread_fills_from_one_document_when_it_is_all_there_is() -> None:
    hits = [_hit(f"a{i}", "A") for i in range(6)]
    assert [h.id for h in spread(hits, top_k=5, per_document=2)] == ["a0", "a1", "a2", "a3", "a4"]


def test_spread_works_on_ids_with_their_documents_named_apart() -> None:
    document = {"a1": "A", "a2": "A", "a3": "A", "b1": "B"}
    chosen = spread(list(document), top_k=3, per_document=2, document=document.__getitem__)
    assert chosen == ["a1", "a2", "b1"]
