"""Chroma, the VectorStore (rag/store.py) threadwise runs on: a server (CHROMA_HOST) or embedded."""

from rag.chroma.client import open_client, open_unlocked
from rag.chroma.files import check_store, hold_directory, is_store, store_files
from rag.chroma.store import ChromaStore, collection_base, open_store

__all__ = [
    "ChromaStore",
    "check_store",
    "collection_base",
    "hold_directory",
    "is_store",
    "open_client",
    "open_store",
    "open_unlocked",
    "store_files",
]
