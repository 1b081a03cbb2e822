"""Embedding order: questions never wait for an ingest's embedding, and questions that wait together
are embedded in one model run (the real model; ordering asserted by events, not timings)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from rag.embed import EncodeGate, SentenceEmbedder


def fresh_embedder(gate: EncodeGate | None = None) -> SentenceEmbedder:
    """No cache, so every text costs a model run; the weights are the process's one loaded copy."""
    embedder = SentenceEmbedder(cache_size=0, cache_ttl=0, gate=gate)
    embedder.load()
    return embedder


def passages(n: int) -> list[str]:
    words = "the certificate rotates every year and the portal issues a new one on request".split()
    return [" ".join(words[(i + j) % len(words)] for j in range(220)) + f" ({i})" for i in range(n)]


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


def hold_the_query_turn(gate: EncodeGate) -> Callable[[], None]:
    """A question that holds the model's turn until the returned function lets it go (and waits
    for it to end)."""
    release = threading.Event()

    def question() -> None:
        with gate.query():
            release.wait(10)

    holder = threading.Thread(target=question)
    holder.start()
    wait_until(lambda: gate.queries == 1)

    def let_go() -> None:
        release.set()
        holder.join()

    return let_go


def test_a_question_is_embedded_while_an_ingest_is_still_embedding() -> None:
    embedder = fresh_embedder()
    texts = passages(48)  # six sub-batches: seconds of CPU
    progress: list[int] = []
    ingest = threading.Thread(target=embedder.embed, args=(texts,), kwargs={"progress": progress.append})
    ingest.start()
    wait_until(lambda: len(progress) >= 2)  # the first sub-batch is done, the rest is to come

    vector = embedder.embed_query("How do I rotate the VPN certificate?")

    assert ingest.is_alive()  # the question did not wait for the ingest to finish
    ingest.join()
    assert sum(progress) == len(texts)
    alone = fresh_embedder().embed_query("How do I rotate the VPN certificate?")
    np.testing.assert_allclose(vector, alone, atol=1e-5)


def test_an_ingest_sub_batch_waits_for_the_question_being_embedded() -> None:
    gate = EncodeGate(max_yield=60)
    order: list[str] = []
    query_started = threading.Event()
    release_query = threading.Event()

    def question() -> None:
        with gate.query():
            order.append("question starts")
            query_started.set()
            release_query.wait(10)
            order.append("question ends")

    def ingest() -> None:
        with gate.bulk():
            order.append("ingest sub-batch starts")

    asker = threading.Thread(target=question)
    asker.start()
    query_started.wait(10)
    bulk = threading.Thread(target=ingest)
    bulk.start()
    bulk.join(0.2)  # would have run by now if it did not wait
    release_query.set()
    asker.join()
    bulk.join()
    assert order == ["question starts", "question ends", "ingest sub-batch starts"]


def test_no_ingest_sub_batch_starts_while_a_question_is_searched() -> None:
    gate = EncodeGate(max_yield=60)
    order: list[str] = []

    def ingest() -> None:
        with gate.bulk():
            order.append("ingest sub-batch starts")

    with gate.question():  # embedded already, now searching: not holding the model
        with gate.query():
            order.append("another question embeds at once")
        bulk = threading.Thread(target=ingest)
        bulk.start()
        bulk.join(0.2)  # would have run by now if it did not wait
        order.append("search done")
    bulk.join()
    assert order == ["another question embeds at once", "search done", "ingest sub-batch starts"]


def test_an_ingest_is_not_held_up_for_ever_by_questions() -> None:
    gate = EncodeGate(max_yield=0.05)
    entered = threading.Event()
    let_go = hold_the_query_turn(gate)  # a question that does not end by itself
    with gate.bulk():
        entered.set()
    let_go()
    assert entered.is_set()


def test_questions_waiting_together_share_one_model_run() -> None:
    gate = EncodeGate()
    embedder = fresh_embedder(gate)
    questions = [f"What does step {n} of the VPN setup do?" for n in range(5)]
    results: dict[str, np.ndarray] = {}
    let_go = hold_the_query_turn(gate)

    def ask(question: str) -> None:
        results[question] = embedder.embed_query(question)

    askers = [threading.Thread(target=ask, args=(q,)) for q in questions]
    for t in askers:
        t.start()
    wait_until(lambda: gate.queries == 1 + len(questions))  # all five are waiting
    runs = embedder.model_runs
    let_go()
    for t in askers:
        t.join()

    assert embedder.model_runs == runs + 1
    alone = fresh_embedder()
    for q in questions:  # each got its own vector
        np.testing.assert_allclose(results[q], alone.embed_query(q), atol=1e-5)


def test_a_failed_run_fails_every_question_in_it_and_the_next_ones_run_again() -> None:
    gate = EncodeGate()
    embedder = fresh_embedder(gate)
    errors: list[BaseException] = []

    def ask(text: str) -> None:
        try:
            embedder.embed_query(text)
        except BaseException as exc:  # the test reads what each asker got
            errors.append(exc)

    let_go = hold_the_query_turn(gate)
    askers = [threading.Thread(target=ask, args=(q,)) for q in ("first question", "second question")]
    for t in askers:
        t.start()
    wait_until(lambda: gate.queries == 3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(embedder, "_run_queries", _fail)
        let_go()
        for t in askers:
            t.join()
    assert [str(e) for e in errors] == ["model failed", "model failed"]
    assert embedder.embed_query("first question").shape == (embedder.dimension,)


def _fail(*args: object, **kwargs: object) -> np.ndarray:
    raise RuntimeError("model failed")
