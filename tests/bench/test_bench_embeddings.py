"""Embeddings per second for 256 short sentences: localai vs llama-server vs sentence-transformers.

Run with `flock /tmp/localai-build.lock python3 build.py bench -k embeddings` (it builds
build/bin/llama-server from the same fetched llama.cpp source). All three embed the same
256 sentences with all-MiniLM-L6-v2 on the same number of threads:
  (a) localai's /v1/embeddings: one request with all 256 inputs, and 8 concurrent requests of 32;
  (b) llama.cpp's `llama-server --embeddings` on the same GGUF, the same two request shapes,
      once with its default slots/batch sizes and once tuned for many small inputs;
  (c) sentence-transformers on torch (CPU), batched, in the throwaway venv /tmp/stvenv when it
      exists (torch is not a dependency of this project), as a persistent subprocess.
Every round measures every contender (paired rounds, see test_bench). A last measurement times
the model's linear layers alone as f32 GEMMs through numpy's OpenBLAS: the arithmetic every
contender must do, so a floor under any of them.
Requests ask for base64 vectors, the openai SDK's default wire format. The last test prints
the ratios and writes .benchmarks/embeddings-ratios.json.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import os
import statistics
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.bench.support import UpstreamLlamaServer, paired_ratio, paired_rounds
from tests.support import ROOT, LiveServer

pytestmark = pytest.mark.bench

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
LLAMA_SERVER = ROOT / "build" / "bin" / "llama-server"
ST_PYTHON = Path(os.environ.get("BENCH_ST_PYTHON", "/tmp/stvenv/bin/python"))
MODEL = "text-embedding-ada-002"
N_SENTENCES = 256
# llama-server's defaults, and a setting for many small inputs: enough slots for whole
# batches of inputs, and a micro-batch as large as the logical batch (BERT cannot split one).
UPSTREAM_CONFIGS = {
    "llama-server": [],
    "llama-server-tuned": ["-np", "64", "-b", "4096", "-ub", "4096", "-c", "32768"],
}
RESULTS: dict[tuple[str, str], dict] = {}  # (contender, shape) -> rate, paired ratio
FLOOR: dict[str, float] = {}


def sentences(n: int = N_SENTENCES) -> list[str]:
    subjects = ["The cat", "A young engineer", "My neighbour", "The old library", "A small robot", "Our team",
                "The river", "This recipe"]
    verbs = ["quietly explains", "carefully repairs", "often visits", "never forgets", "slowly paints",
             "happily shares", "rarely questions", "proudly describes"]
    objects = ["the broken bicycle.", "a forgotten song.", "the morning news.", "an ancient map.",
               "the new database schema.", "a cup of green tea.", "the winter garden.", "our quarterly report."]
    out = [f"{s} {v} {o}" for s in subjects for v in verbs for o in objects]
    return out[:n]


def embed_request(port: int, inputs: list[str]) -> np.ndarray:
    body = json.dumps({"model": MODEL, "input": inputs, "encoding_format": "base64"})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("POST", "/v1/embeddings", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
        assert response.status == 200, payload[:500]
    finally:
        conn.close()
    data = sorted(json.loads(payload)["data"], key=lambda d: d["index"])
    return np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in data])


def one_request(port: int, texts: list[str]) -> np.ndarray:
    return embed_request(port, texts)


def eight_requests(port: int, texts: list[str]) -> np.ndarray:
    size = len(texts) // 8
    parts: dict[int, np.ndarray] = {}

    def send(k: int) -> None:
        parts[k] = embed_request(port, texts[k * size:(k + 1) * size])

    threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(parts) == 8, "a request failed"
    return np.concatenate([parts[k] for k in range(8)])


SHAPES = {"1x256": one_request, "8x32": eight_requests}


@pytest.fixture(scope="module")
def minilm_folder(tmp_path_factory) -> Path:
    from localai.convert.bert import convert_bert_to_gguf
    from localai.defaults import EMBEDDING_MODEL_FILE
    from localai.fetch import fetch_file

    folder = tmp_path_factory.mktemp("bench-embeddings")
    convert_bert_to_gguf(fetch_file("minilm_l6_v2"), folder / EMBEDDING_MODEL_FILE)
    (folder / f"{MODEL}.yaml").write_text((ROOT / "models" / f"{MODEL}.yaml").read_text())
    return folder


@pytest.fixture(scope="module")
def reference_vectors(minilm_folder) -> np.ndarray:
    """What every contender must return (checked, so a fast wrong answer cannot win)."""
    from localai.bindings.bert import BertModel
    from localai.defaults import EMBEDDING_MODEL_FILE

    with BertModel(minilm_folder / EMBEDDING_MODEL_FILE, n_threads=THREADS) as model:
        return model.encode(sentences())[0]


@pytest.fixture(scope="module")
def server_ports(minilm_folder):
    from localai.defaults import EMBEDDING_MODEL_FILE

    if not LLAMA_SERVER.exists():
        pytest.fail("build/bin/llama-server is missing: run `python3 build.py bench`")
    ports: dict[str, int] = {}
    started: list = []
    try:
        ours = LiveServer(minilm_folder, "--threads", str(THREADS))
        started.append(ours)
        ports["localai"] = ours.port
        for name, extra in UPSTREAM_CONFIGS.items():
            upstream = UpstreamLlamaServer(LLAMA_SERVER, minilm_folder / EMBEDDING_MODEL_FILE, THREADS, "--embeddings",
                                           *extra)
            started.append(upstream)
            ports[name] = upstream.port
        yield ports
    finally:
        for server in started:
            server.stop()


ST_SCRIPT = r"""
import json, sys
import torch
from sentence_transformers import SentenceTransformer
threads, model_dir, batch_size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
model = SentenceTransformer(model_dir, device="cpu")
texts = json.loads(sys.stdin.readline())
print("ready", flush=True)
for line in sys.stdin:
    vectors = model.encode(texts, batch_size=batch_size, convert_to_numpy=True)
    print(json.dumps(vectors[:4].tolist()), flush=True)
"""
ST_BATCH_SIZES = (32, 256)


@pytest.fixture(scope="module")
def st_encoders() -> dict:
    """name -> encode() for sentence-transformers at each batch size, each a persistent subprocess
    of the throwaway venv; empty (and said so) when the venv is missing."""
    if not ST_PYTHON.exists():
        print(f"\n{ST_PYTHON} not found, sentence-transformers not measured: create the throwaway venv with "
              "`python3 -m venv /tmp/stvenv && /tmp/stvenv/bin/pip install torch sentence-transformers`")
        yield {}
        return
    from localai.fetch import fetch_file

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    procs: list[subprocess.Popen] = []
    encoders = {}

    def encoder_for(proc: subprocess.Popen):
        def encode() -> np.ndarray:  # the first 4 vectors come back, enough to check the answer
            proc.stdin.write("go\n")
            proc.stdin.flush()
            return np.array(json.loads(proc.stdout.readline()), dtype=np.float32)
        return encode

    try:
        for batch_size in ST_BATCH_SIZES:
            proc = subprocess.Popen([str(ST_PYTHON), "-c", ST_SCRIPT, str(THREADS), str(fetch_file("minilm_l6_v2")),
                                     str(batch_size)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                    env=env)
            procs.append(proc)
            proc.stdin.write(json.dumps(sentences()) + "\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "ready"
            encoders[f"sentence-transformers-b{batch_size}"] = encoder_for(proc)
        yield encoders
    finally:
        for proc in procs:
            proc.stdin.close()
            proc.wait(timeout=60)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_bench(benchmark, server_ports, st_encoders, reference_vectors, shape):
    """Every contender in every round (tests.conftest.paired_rounds), each measured call preceded by
    the same call unmeasured."""
    texts = sentences()
    runners = {name: (lambda port=port: SHAPES[shape](port, texts)) for name, port in server_ports.items()}
    if shape == "1x256":  # sentence-transformers encodes one list; it has no request shapes
        runners.update(st_encoders)
    for name, run in runners.items():  # a fast wrong answer must not win
        vectors = run()
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # llama-server normalises too
        assert ((vectors * reference_vectors[:len(vectors)]).sum(axis=1) >= 0.999).all(), name
    def timed(run) -> float:
        started = time.perf_counter()
        run()
        return time.perf_counter() - started

    benchmark.group = f"embeddings {shape} (one round = every contender)"
    seconds = paired_rounds(benchmark, {name: functools.partial(timed, run) for name, run in runners.items()}, ROUNDS,
                            warmups=runners)
    ours = seconds["localai"]
    for name, times in seconds.items():
        RESULTS[(name, shape)] = {
            "per_second": N_SENTENCES / statistics.median(times),
            "ratio": paired_ratio(times, ours),  # localai / name in rate: their seconds / ours
        }
    benchmark.extra_info.update({f"{n} per_second": r["per_second"] for (n, s), r in RESULTS.items() if s == shape})


def test_bench_linear_layers_floor(benchmark, minilm_folder):
    """The encoder's linear layers alone (QKV, attention output, both FFN matrices of every layer)
    over exactly the tokens of the 256 sentences, as f32 GEMMs through numpy's OpenBLAS on all
    cores. Any implementation does at least this arithmetic; with a BLAS-class GEMM it costs about
    this long, whatever surrounds it."""
    import gguf

    from localai.bindings.bert import BertModel
    from localai.defaults import EMBEDDING_MODEL_FILE

    path = minilm_folder / EMBEDDING_MODEL_FILE
    fields = gguf.GGUFReader(path).fields
    value = lambda key: int(fields[key].parts[fields[key].data[0]][0])  # noqa: E731
    n_layer, n_ff = value("bert.block_count"), value("bert.feed_forward_length")
    with BertModel(path, n_threads=THREADS) as model:
        n_tokens = sum(len(model.tokenize(t)) for t in sentences())
        n_embd = model.n_embd
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n_tokens, n_embd), dtype=np.float32)
    h = rng.standard_normal((n_tokens, n_ff), dtype=np.float32)
    weights = [rng.standard_normal(shape, dtype=np.float32)
               for shape in [(n_embd, 3 * n_embd), (n_embd, n_embd), (n_embd, n_ff), (n_ff, n_embd)]]
    qkv, out, up, down = weights

    def linear_layers() -> None:
        for _ in range(n_layer):
            x @ qkv, x @ out, x @ up, h @ down

    seconds: list[float] = []

    def timed() -> None:
        started = time.perf_counter()
        linear_layers()
        seconds.append(time.perf_counter() - started)

    benchmark.group = "embeddings floor"
    benchmark.pedantic(timed, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    flops = 2 * n_tokens * n_layer * sum(w.size for w in weights)
    FLOOR.update({"seconds": statistics.median(seconds), "tokens": n_tokens, "gflop": flops / 1e9,
                  "gflop_per_s": flops / 1e9 / statistics.median(seconds)})
    benchmark.extra_info.update(FLOOR)


def test_report_ratios(request):
    """localai / each contender, embeddings per second (higher is better)."""
    if not RESULTS:
        pytest.skip("run the whole module to compare")
    lines = ["", f"embeddings/s, {N_SENTENCES} short sentences, all-MiniLM-L6-v2 f16, {THREADS} threads, "
                 f"median of {ROUNDS} rounds; ratio = median of the per-round ratios localai / contender"]
    report: dict[str, dict] = {"rates": {}, "ratios": {}}
    for (contender, shape), r in sorted(RESULTS.items()):
        report["rates"][f"{contender} {shape}"] = r["per_second"]
        line = f"  {contender:28s} {shape:6s} {r['per_second']:9.1f}/s"
        if contender != "localai":
            report["ratios"][f"localai / {contender} {shape}"] = r["ratio"]
            line += f"   localai / it {r['ratio']:.2f}x"
        lines.append(line)
    if FLOOR:
        lines.append(f"  linear layers alone, f32 OpenBLAS GEMM: {FLOOR['seconds'] * 1000:.0f} ms for "
                     f"{FLOOR['tokens']} tokens ({FLOOR['gflop']:.1f} GFLOP at {FLOOR['gflop_per_s']:.0f} GFLOP/s) = "
                     f"{N_SENTENCES / FLOOR['seconds']:.0f}/s at most")
        report["linear_layers_floor"] = FLOOR
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    (reporter.write_line if reporter else print)("\n".join(lines))  # shown even when output is captured
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "embeddings-ratios.json").write_text(json.dumps(report, indent=2))
