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


def _index() -> KeywordIndex:
    texts = {
        "a": "Carrageenan nasal spray reduced the viral load in the trial.",
        "b": "Zanamivir and carrageenan were applied intranasally; carrageenan coats the virus.",
        "c": "The vaccine was given twice. ERR_CONN_4021 appears when the certificate is rejected.",
        "d": "Vaccination of the cohort started in March.",
    }
    return KeywordIndex.from_texts(list(texts), list(texts.values()))


def test_a_misspelt_word_finds_the_word_one_edit_away() -> None:
    index = _index()
    for typo in ("carageenan", "carrageenen", "carrgaeenan", "carrageenann"):
        hits = [cid for cid, _ in index.search(f"Does {typo} help?", 5)]
        assert hits[:2] == ["b", "a"], typo  # b says it twice


def test_correction_prefers_the_most_common_neighbour_and_spares_short_words_and_identifiers() -> None:
    index = _index()
    assert [cid for cid, _ in index.search("vaccinee", 5)] == ["c"]  # "vaccine", not a longer word
    assert index.search("vacine", 5)[0][0] == "c"
    assert index.search("viru", 5) == []  # under five letters: too often another real word
    assert index.search("4022", 5) == []  # codes and numbers are matched exactly or not at all
    assert index.search("ERR_CONN_4021", 5)[0][0] == "c"
    assert index.search("spray", 5)[0][0] == "a"  # a known word is searched as it is
