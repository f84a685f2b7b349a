"""Per-step UNet time of the image pipeline at 256x256, modes 0 and 1, on the tiny asset set.

Run with `flock /tmp/localai-build.lock python3 build.py --stablediffusion bench -k sd` (or, with the
build in place, `flock /tmp/localai-build.lock .venv/bin/python -m pytest tests/bench/test_bench_sd.py
-m bench -s`). A step is two UNet runs (prompt and negative prompt) plus the sampler update; each
round generates one 10-step image and takes the sampling time the pipeline reports, so loading,
text encoding and decoding are not counted. The tiny nets measure the pipeline's per-step overhead
(ncnn graph scheduling, blob copies, sampler), not the real model's arithmetic.
"""

from __future__ import annotations

import json
import os
import statistics

import pytest

from localai import sdassets
from tests.support import ROOT

pytestmark = [pytest.mark.bench, pytest.mark.stablediffusion]

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "9"))
STEPS = 10
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    from localai.bindings import sd

    folder = tmp_path_factory.mktemp("sd-bench")
    sdassets.write_tiny_assets(folder / "assets", seed=0)
    with sd.Pipeline(folder / "assets", folder / "cache", threads=THREADS) as pipe:
        yield pipe


@pytest.mark.parametrize("mode", [0, 1])
def test_unet_step_256(pipeline, mode):
    pipeline.generate("warm up", "", width=256, height=256, steps=2, mode=mode, seed=0)
    per_step = []
    for seed in range(ROUNDS):
        _, timings = pipeline.generate("a lighthouse on a cliff, (sunset:1.2)", "blurry", width=256, height=256,
                                       steps=STEPS, mode=mode, seed=seed)
        assert timings.unet_runs == 2 * STEPS
        per_step.append(timings.sample_ms / STEPS)
    RESULTS[f"mode{mode}"] = statistics.median(per_step)
    print(f"\nsd 256x256 mode {mode}, {THREADS} threads: {statistics.median(per_step):.2f} ms/step median "
          f"of {ROUNDS} (min {min(per_step):.2f}, max {max(per_step):.2f})")


def test_write_results():
    if RESULTS:
        out = ROOT / ".benchmarks" / "sd-steps.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"threads": THREADS, "steps": STEPS, "ms_per_step": RESULTS}, indent=2) + "\n")
