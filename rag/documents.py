"""Which stored document a name denotes, and who may replace or delete it."""

from __future__ import annotations

import unicodedata
from dataclasses import replace

from rag.errors import UserFacingError
from rag.names import look_alike_key, name_key, shown
from rag.scopes import private_scope
from rag.store import VectorStore
from rag.types import DocumentInfo, Upload


class NoSuchDocument(UserFacingError):
    def __init__(self, name: str) -> None:
        super().__init__(f"There is no document called {shown(name)}. Say `docs` to see the list.")
        self.name = name


class NotYourDocument(UserFacingError):
    """Someone other than a document's uploader (and no admin) tried to replace or delete it."""

    def __init__(self, name: str, owner: str) -> None:
        who = owner or "someone else"
        super().__init__(f"{shown(name)} belongs to {who}: only they or an admin can change it.")
        self.name = name
        self.owner = owner


class LookAlikeName(UserFacingError):
    """A new document's name reads like another person's document's."""

    def __init__(self, name: str, existing: DocumentInfo) -> None:
        who = existing.uploader or "someone else"
        super().__init__(
            f"{shown(name)} looks like {shown(existing.name)}, which belongs to {who}: please give "
            "your file a name that differs in more than case, accents or look-alike letters."
        )


class NameTaken(UserFacingError):
    """A name that denotes, or reads like, someone else's document the uploader may not see where
    they are: neither its name, nor its owner, nor whether it holds the same bytes is said."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{shown(name)} is taken by a document you cannot see here: send it under another name."
        )
        self.name = name


def refuse_hidden(upload: Upload, existing: DocumentInfo) -> None:
    """NameTaken when `upload.sees` does not see `existing`, unless it is the uploader's own and they
    send it from their direct messages (which see their private documents): there they manage what
    is theirs anywhere. From a channel, their document of another place is not replaced: its new
    content would answer there, not where it was posted."""
    if upload.sees is None or upload.sees.sees(existing.scope):
        return
    from_own_place = upload.sees.sees(private_scope(upload.uploader))
    if existing.uploader != upload.uploader or not from_own_place:
        raise NameTaken(upload.name)


def find_document(store: VectorStore, kb: str, name: str, *, scan: bool = False) -> DocumentInfo | None:
    """The document `name` denotes: stored under exactly that name, under its normalised or
    decomposed form (names stored before normalisation, e.g. a `café.md` from a Mac), and with
    `scan`, any stored name that normalises to the same (one with a control character, say).
    Ingest does not scan: the manifest is read whole for that, and a folder has many files."""
    key = name_key(name)
    for candidate in dict.fromkeys((name, key, unicodedata.normalize("NFD", key))):
        info = store.document(kb, candidate)
        if info is not None:
            return info
    if not scan:
        return None
    return next((d for d in store.documents(kb) if name_key(d.name) == key), None)


def replacing(upload: Upload, previous: DocumentInfo) -> Upload:
    """The upload as the new version of `previous`, if it may be: else NotYourDocument. A name
    stored before names were normalised keeps it, so the swap stays one manifest write."""
    if not upload.trusted and previous.uploader != upload.uploader:
        raise NotYourDocument(previous.name, previous.uploader)
    uploader = upload.uploader if upload.claim else previous.uploader
    return replace(upload, name=previous.name, uploader=uploader, scope=upload.scope or previous.scope)


def refuse_look_alike(store: VectorStore, kb: str, upload: Upload) -> None:
    """A new name that reads like someone else's document (`Policy.md`, `p\u043elicy.md` beside
    `policy.md`) would be cited as if it were theirs: refused, naming the owner where the uploader
    may see it."""
    key = look_alike_key(upload.name)
    for doc in store.documents(kb):
        if doc.uploader != upload.uploader and look_alike_key(doc.name) == key:
            refuse_hidden(upload, doc)
            raise LookAlikeName(upload.name, doc)


def check_owner(info: DocumentInfo, user: str | None) -> None:
    """NotYourDocument unless `user` uploaded it; None: anyone (an admin, the operator)."""
    if user is not None and info.uploader != user:
        raise NotYourDocument(info.name, info.uploader)
