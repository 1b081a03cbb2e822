"""The composition root: everything threadwise builds from Settings, in one place that knows every
concrete class. Commands ask it for what they run: the engine, the chat app, `serve`'s web service,
`worker`'s arq Worker, `chat`'s terminal."""

from bot.compose.chat import ChatApp, build_chat_app, build_handler
from bot.compose.engine import build_engine, build_query_cache, open_redis, open_store
from bot.compose.service import Service, build_service
from bot.compose.terminal import build_terminal
from bot.compose.worker import build_worker, queue_depth

__all__ = [
    "ChatApp",
    "Service",
    "build_chat_app",
    "build_engine",
    "build_handler",
    "build_query_cache",
    "build_service",
    "build_terminal",
    "build_worker",
    "open_redis",
    "open_store",
    "queue_depth",
]
