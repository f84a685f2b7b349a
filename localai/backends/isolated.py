"""A text engine in a child process of its own: how a model split over ggml RPC workers runs.

ggml-rpc ends the whole process (``GGML_ABORT``) when a worker stops answering in the middle
of a computation. A model that uses workers therefore runs in a child process, so that a lost
worker costs that model's requests in flight (a clear 503) and a reload on the next request,
never the server. The child runs an ordinary ``LlamaEngine``; this side speaks the engine
contract (``TextGenerator``, ``Embedder``) to it over a socket pair: pickled messages between
two processes of the same installation, never a network.

Messages are ``(call id, kind, payload)``. Parent to child: ``call`` (a method and its
arguments), ``generate``, ``cancel``, ``close``. Child to parent: ``ok`` (a call's value),
``error`` (an exception, rebuilt here as its own class), ``started`` (a generation's choice
count), ``event`` (one ``(choice, Delta | Finished)``), ``end``.
"""

from __future__ import annotations

import builtins
import itertools
import logging
import queue
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from localai import errors
from localai.backends.polling import queued
from localai.capabilities import Delta, Event, Finished, GenerationOptions, PromptInfo, collect
from localai.config import ModelConfig
from localai.errors import ModelLoadError, ModelUnloaded, WorkerLost
from localai.settings import Settings

log = logging.getLogger("localai.isolated")

LOAD_CALL = 0


def error_payload(exc: BaseException) -> tuple[str, str, str, dict]:
    """An exception as (module, class, message, attributes) that survive pickling."""
    attrs = {k: v for k, v in vars(exc).items() if isinstance(v, (str, int, float, bool, type(None)))}
    return type(exc).__module__, type(exc).__qualname__, str(exc), attrs


def _rebuild_error(payload: tuple[str, str, str, dict]) -> BaseException:
    """The exception of ``error_payload`` as its own class (ours or a builtin), else NativeError."""
    module, name, message, attrs = payload
    home = errors if module == errors.__name__ else builtins if module == "builtins" else None
    cls = getattr(home, name, None) if home is not None else None
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return errors.NativeError(f"{name}: {message}")
    exc = cls.__new__(cls)
    exc.args = (message,)
    exc.__dict__.update(attrs)
    return exc


Replies = queue.SimpleQueue  # one call in flight: its (kind, payload) replies, in order


class IsolatedEngine:
    """A ``LlamaEngine`` in a child process (``python -m localai.backends.isolated_child``)."""

    def __init__(self, config: ModelConfig, settings: Settings) -> None:
        self.name = config.name
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "localai.backends.isolated_child", str(theirs.fileno())],
                                          pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._send_lock = threading.Lock()
        self._calls: dict[int, Replies] = {}
        self._calls_lock = threading.Lock()
        self._ids = itertools.count(1)
        self.lost: str | None = None  # why the child is gone, once it is
        self._closing = False
        try:
            self._conn.send((LOAD_CALL, "load", (config, settings)))
            _, kind, payload = self._conn.recv()
        except (EOFError, OSError):
            self._reap()
            raise ModelLoadError(f"{config.name}: the model's process ended while loading it (exit status "
                                 f"{self._proc.returncode}): an RPC worker may have stopped answering; the server's "
                                 "log has the process's own message") from None
        if kind == "error":
            self._reap()
            raise _rebuild_error(payload)
        self._prompt_info: PromptInfo = payload["prompt_info"]
        self.devices: list[str] = payload["devices"]
        self._reader = threading.Thread(target=self._read, name=f"isolated-{self.name}", daemon=True)
        self._reader.start()

    # ---- the connection ----
    def _read(self) -> None:
        """Route the child's replies to their calls; when it is gone, fail every call in flight."""
        while True:
            try:
                call_id, kind, payload = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._calls_lock:
                replies = self._calls.get(call_id)
            if replies is not None:
                replies.put((kind, payload))
        self._proc.wait()
        if not self._closing:
            self.lost = (f"the process of the model {self.name} ended (exit status {self._proc.returncode}): an "
                         "RPC worker was lost or stopped answering; the model is loaded again on the next request")
            log.error("model %s: %s", self.name, self.lost)
        reason = self.lost or f"the model {self.name} was unloaded"
        with self._calls_lock:
            calls, self._calls = list(self._calls.values()), {}
        for replies in calls:
            replies.put(("lost", reason))

    def _open(self, kind: str, payload: Any) -> tuple[int, Replies]:
        if self.lost:
            raise WorkerLost(self.lost)
        if self._closing:
            raise ModelUnloaded(f"the model {self.name} was unloaded (the server is shutting down)")
        call_id, replies = next(self._ids), queue.SimpleQueue()
        with self._calls_lock:
            self._calls[call_id] = replies
        self._send(call_id, kind, payload)
        return call_id, replies

    def _send(self, call_id: int, kind: str, payload: Any) -> None:
        try:
            with self._send_lock:
                self._conn.send((call_id, kind, payload))
        except OSError:
            pass  # the reader sees the end and fails the call

    def _done(self, call_id: int) -> None:
        with self._calls_lock:
            self._calls.pop(call_id, None)

    def _reply(self, replies: Replies) -> Any:
        """The payload of a call's next reply; an error or the child's end is raised."""
        kind, payload = replies.get()
        if kind in ("error", "lost"):
            self._raise(kind, payload)
        return payload

    def _raise(self, kind: str, payload: Any) -> None:
        if kind == "error":
            raise _rebuild_error(payload)
        raise WorkerLost(payload) if self.lost else ModelUnloaded(payload)

    def _call(self, method: str, *args: Any) -> Any:
        call_id, replies = self._open("call", (method, args))
        try:
            return self._reply(replies)
        finally:
            self._done(call_id)

    # ---- the engine contract ----
    def prompt_info(self) -> PromptInfo:
        return self._prompt_info

    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        return self._call("tokenize", text, add_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._call("detokenize", list(tokens))

    def embed(self, inputs: Sequence[str] | Sequence[Sequence[int]]) -> tuple[np.ndarray, int]:
        return self._call("embed", list(inputs))

    def status(self) -> dict:
        if self.lost:
            return {"state": "lost", "reason": self.lost}
        return {**self._call("status"), "process": self._proc.pid, "devices": self.devices}

    def generate(self, prompts: Sequence[str | list[int]], options: GenerationOptions, *,
                 n: int = 1) -> "RemoteGeneration":
        call_id, replies = self._open("generate", (list(prompts), options, n))
        try:
            choices = self._reply(replies)  # "started": the prompts were checked and submitted
        except BaseException:
            self._done(call_id)
            raise
        return RemoteGeneration(self, call_id, replies, n, choices)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._send(0, "close", None)
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._conn.close()


class RemoteGeneration:
    """The ``Generation`` contract over a generation running in the child."""

    def __init__(self, engine: IsolatedEngine, call_id: int, replies: Replies, n: int, choices: int) -> None:
        self._engine, self._call_id, self._replies = engine, call_id, replies
        self.n, self.choices = n, choices

    def __iter__(self) -> Iterator[tuple[int, Event]]:
        return self._events(None)

    def has_pending(self) -> bool:
        return not self._replies.empty()

    def cancel(self) -> None:
        self._engine._send(self._call_id, "cancel", None)

    def _events(self, abandoned: Callable[[], bool] | None) -> Iterator[tuple[int, Event]]:
        try:
            for kind, payload in queued(self._replies, abandoned, self.cancel):
                if kind == "end":
                    return
                if kind != "event":  # an error, or the end of the child: raise it
                    self._engine._raise(kind, payload)
                yield payload
        finally:
            self._engine._done(self._call_id)

    def collect(self, abandoned: Callable[[], bool] | None = None) -> tuple[list[list[Delta]], dict[int, Finished]]:
        return collect(self._events(abandoned), self.choices)
