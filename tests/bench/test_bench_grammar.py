"""Cost of grammar-constrained sampling per token: the same greedy generation with and without
a grammar, in-process through the scheduler (run: `python3 build.py bench -k grammar`)."""

from __future__ import annotations

import statistics
import time

import pytest

from localai.backends.llama import LlamaEngine
from localai.capabilities import GenerationOptions
from localai.grammar import JSON_OBJECT_GBNF, schema_to_gbnf
from localai.sampling import SamplingParams

pytestmark = pytest.mark.bench
RESULTS: dict[str, float] = {}
PROMPT = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
          "Describe a city as JSON with many fields.<|im_end|>\n<|im_start|>assistant\n")
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "population": {"type": "integer"},
                                           "districts": {"type": "array", "items": {"type": "string"}}},
          "required": ["name", "population", "districts"]}
GRAMMARS = {"none": None, "json_object": JSON_OBJECT_GBNF, "json_schema": schema_to_gbnf(SCHEMA)}


@pytest.fixture(scope="module")
def engine(smollm_path):
    e = LlamaEngine(str(smollm_path), threads=2, parallel=1)
    yield e
    e.close()


@pytest.mark.parametrize("grammar", list(GRAMMARS))
def test_grammar_cost(benchmark, engine, grammar):
    prompt = engine.tokenize(PROMPT)
    rates: list[float] = []

    def run() -> None:
        options = GenerationOptions(max_tokens=96, ignore_eos=grammar is None,
                                    sampling=SamplingParams(temperature=0, grammar=GRAMMARS[grammar]))
        started = time.perf_counter()
        _, finished = engine.generate([prompt], options).collect()
        rates.append(finished[0].completion_tokens / (time.perf_counter() - started))

    benchmark.group = "grammar"
    benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    RESULTS[grammar] = statistics.median(rates)
    benchmark.extra_info["tokens_per_s"] = RESULTS[grammar]


def test_report_grammar_cost():
    if len(RESULTS) < len(GRAMMARS):
        pytest.skip("run the whole module to compare")
    base = RESULTS["none"]
    print("\ngrammar sampling cost (SmolLM2-135M, 2 threads, greedy, same prompt; median tokens/s incl. prompt):")
    for name, rate in RESULTS.items():
        print(f"  {name:12s} {rate:7.1f} t/s  ({rate / base:.3f}x of no grammar)")
