"""The keyword index finds identifiers exactly and ranks by BM25."""

from __future__ import annotations

from rag.keyword import KeywordIndex, is_identifier, tokenize


def test_identifiers_are_kept_whole_and_split() -> None:
    terms = tokenize("Call getUserById() on v2.3.1; it raises ERR_CONN_4021.")
    for term in ["getuserbyid", "get", "user", "v2.3.1", "err_conn_4021", "4021", "conn"]:
        assert term in terms
    assert "on" not in terms and "it" not in terms  # stopwords


def test_exact_identifier_ranks_its_chunk_first() -> None:
    index = KeywordIndex.from_texts(
        ["a", "b", "c"],
        [
            "Connection errors are common; ERR_CONN_4020 means the proxy refused.",
            "ERR_CONN_4021 means the TLS certificate expired; renew it.",
            "The connection pool is sized by the connection limit.",
        ],
    )
    hits = index.search("what is ERR_CONN_4021?", 3)
    assert hits[0][0] == "b"
    assert index.search("nothing matches zzz", 3) == []


def test_is_identifier() -> None:
    assert is_identifier("err_conn_4021") and is_identifier("v2.3.1") and is_identifier("getUserById")
    assert not is_identifier("certificate") and not is_identifier("Certificate")
