"""The child side of ``localai.backends.isolated``: one model's engine in a process of its own.

``python -m localai.backends.isolated_child FD``: FD is this end of the socket pair. The
first message loads the model (split over its RPC workers); then calls, generations and
cancels are served until ``close`` or the server's end of the socket goes away.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from localai import errors
from localai.backends.isolated import LOAD_CALL, error_payload
from localai.capabilities import GenerationOptions


def _serve(conn: Connection) -> None:
    from localai.backends.llama import load_split

    send_lock = threading.Lock()

    def send(call_id: int, kind: str, payload: Any) -> None:
        with send_lock:
            conn.send((call_id, kind, payload))

    _, _, (config, settings) = conn.recv()
    logging.basicConfig(level=logging.DEBUG if settings.debug else logging.INFO,
                        format=f"%(asctime)s %(levelname)s [{config.name} process] %(message)s")
    try:
        engine = load_split(config, settings)
    except Exception as exc:
        send(LOAD_CALL, "error", error_payload(exc))
        return
    send(LOAD_CALL, "ok", {"prompt_info": engine.prompt_info(), "devices": engine.devices})
    generations: dict[int, Any] = {}

    def run_generation(call_id: int, prompts: list, options: GenerationOptions, n: int) -> None:
        try:
            generation = engine.generate(prompts, options, n=n)
        except Exception as exc:
            send(call_id, "error", error_payload(exc))
            return
        generations[call_id] = generation
        try:
            send(call_id, "started", generation.choices)
            for index, event in generation:
                send(call_id, "event", (index, event))
            send(call_id, "end", None)
        except Exception as exc:
            send(call_id, "error", error_payload(exc))
        finally:
            generations.pop(call_id, None)

    def run_call(call_id: int, method: str, args: tuple) -> None:
        try:
            if method == "tokenize":
                value = engine.tokenize(args[0], add_special=args[1])
            elif method in ("detokenize", "embed", "status"):
                value = getattr(engine, method)(*args)
            else:
                raise errors.NativeError(f"no method {method!r}")
            send(call_id, "ok", value)
        except Exception as exc:
            send(call_id, "error", error_payload(exc))

    try:
        while True:
            try:
                call_id, kind, payload = conn.recv()
            except EOFError:  # the server is gone
                break
            if kind == "close":
                break
            if kind == "cancel":
                generation = generations.get(call_id)
                if generation is not None:
                    generation.cancel()
            elif kind == "generate":
                threading.Thread(target=run_generation, args=(call_id, *payload), daemon=True).start()
            elif kind == "call":
                threading.Thread(target=run_call, args=(call_id, *payload), daemon=True).start()
    finally:
        engine.close()


def main() -> None:
    conn = Connection(int(sys.argv[1]))
    try:
        _serve(conn)
    finally:
        conn.close()
    os._exit(0)  # no interpreter teardown racing daemon threads over freed native objects


if __name__ == "__main__":
    main()
