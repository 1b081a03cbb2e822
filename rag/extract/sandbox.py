"""Parse an upload in a child process with a memory and a time budget, so that a hostile file — a PDF
stream that inflates to gigabytes, a page whose parse tree would fill the memory, a parse that never
ends — costs that child, not the service, and is stopped with a reason.

One small helper process per threadwise process, started with the first parse, imports the parsers
once and forks a fresh child per file: a few milliseconds, where starting Python and importing the
parsers for each file would take half a second, and forking the service itself would copy torch and
its threads. The child caps its own address space (RLIMIT_AS) and CPU time, reads the upload from a
pipe and writes its Sections back as JSON lines; the helper adds how the child ended (exit status and
peak memory). The caller kills a child that runs past its wall-time budget, so no parse holds an
ingest slot for longer than that. Only JSON comes back: a child subverted by a file can return text,
nothing that runs.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import math
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, NoReturn

import docx
import pdfplumber  # noqa: F401  (imported here, before the children fork: rag.extract.pdf_tables)
import pypdfium2 as pdfium

from rag import filetypes
from rag.errors import UserFacingError
from rag.extract.common import _Upload
from rag.extract.parse import damaged, parse_sections
from rag.extract.pdf_tables import find_tables
from rag.types import Section

MiB = 1024 * 1024
# Per file. Generous for real documents (pdfium reads a 500-page PDF in a few seconds and well under
# 100 MB), and small enough that the service (~560 MB with the model loaded), the helper (~65 MB) and
# a child at its cap (~320 MB) stay under 1 GiB in all.
PARSE_SECONDS = 20.0
PARSE_MEMORY = 256 * MiB  # address space a child may add to the helper's (~75 MB) and its upload
# A file's text beyond this could not be embedded in any reasonable time (about a million passages).
MAX_TEXT_BYTES = 128 * MiB
# Children at once per process (the in-process runner's ingest slots): a worker running 16 jobs must
# not hold 16 children at their memory cap. A parse waits for a slot; its budget starts after.
PARALLEL_PARSES = 2

_OUT_OF_MEMORY = 3  # the child's exit status when Python ran out of its address space
_TIME_SIGNALS = (signal.SIGXCPU, signal.SIGALRM)


@dataclass(frozen=True)
class _Budget:
    seconds: float
    memory: int


def parse_isolated(
    upload: _Upload, *, seconds: float = PARSE_SECONDS, memory: int = PARSE_MEMORY
) -> list[Section]:
    """The upload's Sections, parsed in a child within `seconds` and `memory`. Raises UserFacingError
    for a bad file, one that needs more memory or time than that, and one that crashes its parser."""
    with _SLOTS:
        return _parse_in_child(upload, _Budget(seconds, memory + len(upload.data)))


def _parse_in_child(upload: _Upload, budget: _Budget) -> list[Section]:
    child = _HELPER.fork()
    deadline = time.monotonic() + budget.seconds
    try:
        header = json.dumps({"name": upload.name, "ext": upload.ext, "max_bytes": upload.max_bytes})
        header += "\n" + json.dumps(asdict(budget)) + "\n"
        try:
            sent = _send(child.request, (header.encode(), upload.data), deadline)
        finally:
            os.close(child.request)  # the end of the upload, for the child
        reply = _receive(child.result, deadline) if sent else None
        if reply is None or len(reply) > MAX_TEXT_BYTES:
            _kill(child)
    finally:
        os.close(child.result)
    if reply is None:
        raise _too_long(upload.name, budget.seconds)
    if len(reply) > MAX_TEXT_BYTES:
        raise UserFacingError(
            f"{upload.name} holds more text than I can index from one file (over "
            f"{filetypes.human_size(MAX_TEXT_BYTES)}). Please split it into smaller files and upload those."
        )
    return _outcome(upload, reply, budget)


def _kill(child: _Child) -> None:
    """Kill a child that has not closed its pipe (so it has not exited), and wait until the helper
    has reaped it: only then is its memory free and its parse slot given to the next."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _wait(child.result, select.POLLIN, deadline) and os.read(child.result, 1 << 16):
        pass


def _too_long(name: str, seconds: float) -> UserFacingError:
    return UserFacingError(
        f"{name} took longer than {seconds:g} s to read, so I stopped reading it. If it is a real "
        "document, please split it into smaller files and upload those."
    )


def _too_big(name: str) -> UserFacingError:
    return UserFacingError(
        f"{name} needs more memory than I allow for one file, so I stopped reading it (a small file "
        "that unpacks to something huge, a decompression bomb, does this). If it is a real document, "
        "please split it into smaller files and upload those."
    )


def _outcome(upload: _Upload, reply: bytes, budget: _Budget) -> list[Section]:
    """Sections, or the reason, from the child's lines and the helper's closing report."""
    lines = list(_json_lines(reply))
    report = lines.pop() if lines and "exit" in lines[-1] else {}
    if lines and "refused" in lines[0]:
        raise UserFacingError(str(lines[0]["refused"]))
    if lines and lines[-1].get("sections") == len(lines) - 1:
        try:
            return [Section(**fields) for fields in lines[:-1]]
        except TypeError:  # not what our child writes: whatever wrote it is not to be trusted
            raise damaged(upload.name, filetypes.kind_of(upload.ext)) from None
    status, peak = int(report.get("exit", 1)), int(report.get("peak", 0))
    if status == _OUT_OF_MEMORY:
        raise _too_big(upload.name)
    if -status in _TIME_SIGNALS:
        raise _too_long(upload.name, budget.seconds)
    # A crash near the memory cap is the cap: C libraries (pdfium) abort when an allocation fails.
    if status < 0 and peak >= 0.75 * budget.memory:
        raise _too_big(upload.name)
    raise damaged(upload.name, filetypes.kind_of(upload.ext))


def _json_lines(reply: bytes) -> Iterator[dict[str, Any]]:
    for line in reply.decode("utf-8", "surrogatepass").split("\n"):
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue  # cut short by a crash


def _send(fd: int, parts: tuple[bytes, bytes], deadline: float) -> bool:
    """Write the request; False when the deadline passed first. A child that died stops reading: the
    rest is dropped and its report says why."""
    os.set_blocking(fd, False)
    for part in parts:
        view = memoryview(part)
        while view:
            if not _wait(fd, select.POLLOUT, deadline):
                return False
            try:
                view = view[os.write(fd, view[: 1 << 20]) :]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                return True
    return True


def _wait(fd: int, event: int, deadline: float) -> bool:
    """Until `fd` is ready (or its other end closed); False at the deadline. poll, not select: a busy
    service has file descriptors above select's 1024."""
    poller = select.poll()
    poller.register(fd, event)
    while (remaining := deadline - time.monotonic()) > 0:
        if poller.poll(math.ceil(remaining * 1000)):
            return True
    return False


def _receive(fd: int, deadline: float) -> bytes | None:
    """The child's reply, once its last line is in (or the child and the helper closed the pipe);
    None when past the deadline."""
    reply = bytearray()
    while not _complete(reply) and len(reply) <= MAX_TEXT_BYTES:
        if not _wait(fd, select.POLLIN, deadline):
            return None
        part = os.read(fd, 1 << 20)
        if not part:
            break
        reply += part
    return bytes(reply)


def _complete(reply: bytearray) -> bool:
    """Ends with the child's closing line: no need to wait for its exit and the helper's report.
    (Text inside a line has its newlines escaped, so a line's start is always a record's start.)"""
    if not reply.endswith(b"\n"):
        return False
    start = reply.rfind(b"\n", max(0, len(reply) - 4096), len(reply) - 1) + 1
    return reply.startswith((b'{"sections"', b'{"refused"'), start)


# -- the caller's side of the helper ------------------------------------------------------------------


@dataclass(frozen=True)
class _Child:
    pid: int
    request: int  # write end of the pipe the child reads the upload from
    result: int  # read end of the pipe the child and the helper write to


class _Helper:
    """The helper process of this process, started on first use and again when it has died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._owner = 0  # the pid that started it: a forked copy of this process starts its own

    def fork(self) -> _Child:
        request_r, request_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            with self._lock:
                pid = self._fork(request_r, result_w)
        except BaseException:
            os.close(request_w)
            os.close(result_r)
            raise
        finally:
            os.close(request_r)  # the child has its own copies now
            os.close(result_w)
        return _Child(pid, request_w, result_r)

    def _fork(self, request_r: int, result_w: int) -> int:
        for attempt in range(2):  # a helper that died (killed, out of memory) is started again once
            connection = self._connection()
            try:
                socket.send_fds(connection, [b"F"], [request_r, result_w])
                reply = connection.recv(8, socket.MSG_WAITALL)
                if len(reply) == 8:
                    return int(struct.unpack("!q", reply)[0])
            except OSError:
                if attempt:
                    raise
            self._close()
        raise OSError("the parse helper process did not start")

    def _connection(self) -> socket.socket:
        alive = self._process is not None and self._process.poll() is None
        if self._socket is None or not alive or self._owner != os.getpid():
            self._start()
        assert self._socket is not None
        return self._socket

    def _start(self) -> None:
        self._close()
        ours, theirs = socket.socketpair()
        code = f"from rag.extract.sandbox import serve; serve({theirs.fileno()})"
        self._process = subprocess.Popen(
            [sys.executable, "-c", code], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL
        )
        theirs.close()
        self._socket, self._owner = ours, os.getpid()

    def _close(self) -> None:
        if self._socket is not None and self._owner == os.getpid():
            self._socket.close()  # the helper sees the end of its input and exits
        if self._process is not None and self._owner == os.getpid():
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(0.1)
        self._socket = self._process = None


_HELPER = _Helper()  # one per process, like a pool; it starts nothing until the first parse
_SLOTS = threading.BoundedSemaphore(PARALLEL_PARSES)


# -- the helper process -------------------------------------------------------------------------------


def serve(fd: int) -> None:
    """The helper's loop: fork a child per request, tell the caller its pid, and append each child's
    exit report to its result pipe. Ends when the caller closes its end of the socket."""
    logging.getLogger().addHandler(logging.NullHandler())  # parser warnings are not the service's log
    _warm_up()
    gc.freeze()  # a child's collections skip what it inherited, so its pages stay shared, not copied
    connection = socket.socket(fileno=fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, _wake)
    running: dict[int, int] = {}  # child pid -> our copy of its result pipe
    while True:
        ready, _, _ = select.select([connection.fileno(), wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(running)
        if connection.fileno() not in ready:
            continue
        message, fds, _, _ = socket.recv_fds(connection, 1, 2)
        if not message or len(fds) != 2:
            return
        request_fd, result_fd = fds
        pid = os.fork()
        if pid == 0:
            _child(request_fd, result_fd, [connection.fileno(), wake_r, wake_w, *running.values()])
        os.close(request_fd)
        running[pid] = result_fd
        connection.sendall(struct.pack("!q", pid))


def _warm_up() -> None:
    """Parse a tiny file of each kind once here, so that what the parsers import or build on first
    use is inherited by every child instead of being done again in each (50 ms for a .docx)."""
    document = docx.Document()
    document.add_paragraph("warm")
    word = io.BytesIO()
    document.save(word)
    pdf = pdfium.PdfDocument.new()
    pdf.new_page(100, 100)
    portable = io.BytesIO()
    pdf.save(portable)
    samples = {"docx": word.getvalue(), "pdf": portable.getvalue(), "html": b"<p>warm</p>", "csv": b"a\nb\n"}
    for ext in (*samples, "md", "rst", "txt", "json", "yaml", "py"):
        with contextlib.suppress(Exception):
            parse_sections(_Upload(f"warm.{ext}", ext, samples.get(ext, b"warm\n"), 1 << 20))
    find_tables(samples["pdf"], [0], 1.0)  # pdfminer's parser and pdfplumber's table finder, once


def _wake(signum: int, frame: Any) -> None:
    """SIGCHLD only has to interrupt select(); the wake-up fd tells the loop."""


def _reap(running: dict[int, int]) -> None:
    while running:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        result_fd = running.pop(pid, None)
        if result_fd is None:
            continue
        report = {"exit": os.waitstatus_to_exitcode(status), "peak": usage.ru_maxrss * 1024}
        with contextlib.suppress(OSError):  # the caller gave up on it, or its pipe is full
            os.set_blocking(result_fd, False)
            os.write(result_fd, b"\n" + json.dumps(report).encode() + b"\n")
        os.close(result_fd)


# -- the child ----------------------------------------------------------------------------------------


def _child(request_fd: int, result_fd: int, inherited: list[int]) -> NoReturn:
    status = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in inherited:  # other children's pipes must not stay open here
            os.close(fd)
        with os.fdopen(request_fd, "rb") as request:
            about = json.loads(request.readline())
            _limit(_Budget(**json.loads(request.readline())))
            upload = _Upload(about["name"], about["ext"], request.read(), about["max_bytes"])
        with os.fdopen(result_fd, "wb") as out:
            out.writelines(_reply(upload))
        status = 0
    except MemoryError:
        status = _OUT_OF_MEMORY
    finally:
        os._exit(status)


def _reply(upload: _Upload) -> Iterator[bytes]:
    try:
        sections = parse_sections(upload)
    except UserFacingError as exc:
        yield _line({"refused": exc.message})
        return
    for section in sections:
        yield _line(asdict(section))
    yield _line({"sections": len(sections)})


def _line(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode("utf-8", "surrogatepass") + b"\n"


def _limit(budget: _Budget) -> None:
    """Cap this child: its address space, its CPU time, a last alarm should nobody kill it, no core
    files from a crashing parser, and first in line when the machine runs out of memory, so that the
    kernel kills a parse rather than the service (a container's memory limit counts us all)."""
    seconds = math.ceil(budget.seconds)
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as oom:
        oom.write("1000")
    with contextlib.suppress(ValueError, OSError):  # platforms without these limits run without them
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (seconds + 5, seconds + 10))
        space = _address_space() + budget.memory
        resource.setrlimit(resource.RLIMIT_AS, (space, space))
    signal.alarm(seconds + 10)


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()
