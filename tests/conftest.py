"""Shared fixtures: real models from the pinned archives, and a live server on a loopback port."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from tests.support import ROOT, LiveServer


ORDER_SEED_ENV = "LOCALAI_TEST_ORDER_SEED"


def pytest_addoption(parser):
    parser.addoption("--order-seed", type=int, default=None,
                     help="shuffle the modules and the tests within each with this seed (also env "
                          "LOCALAI_TEST_ORDER_SEED): a test that depends on what an earlier one left behind shows it")


def pytest_collection_modifyitems(config, items):
    seed = config.getoption("--order-seed")
    if seed is None and os.environ.get(ORDER_SEED_ENV):
        seed = int(os.environ[ORDER_SEED_ENV])
    if seed is None:
        return
    rng = random.Random(seed)
    modules: dict[str, list] = {}
    for item in items:  # a module's tests stay together (its fixtures are set up once), in a shuffled order
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    groups = list(modules.values())
    rng.shuffle(groups)
    items[:] = [item for group in groups for item in rng.sample(group, len(group))]


def pytest_report_header(config):
    try:
        from localai.cli import build_info

        info = build_info()
        lines = [f"localai native: ggml {info['ggml']}, whisper.cpp {info['whisper.cpp']}",
                 f"cpu: {info['cpu_features']}"]
    except Exception as exc:  # the header must never break collection
        lines = [f"localai native: unavailable ({exc})"]
    seed = config.getoption("--order-seed") or os.environ.get(ORDER_SEED_ENV)
    if seed is not None:
        lines.append(f"test order shuffled, seed {seed}")
    return lines


@pytest.fixture(scope="session")
def smollm_path() -> Path:
    from localai.fetch import fetch_file

    return fetch_file("smollm2")


@pytest.fixture(scope="module")
def smollm_engine(smollm_path):
    """The llama backend's engine on SmolLM2 (2 slots, 2048 tokens each), one per test module."""
    from localai.backends.llama import LlamaEngine

    engine = LlamaEngine(str(smollm_path), context_size=2048, parallel=2, threads=2)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def chat_models_path(tmp_path_factory, smollm_path) -> Path:
    """A models folder with the default chat YAML and the SmolLM2 weights (hard-linked)."""
    from localai.defaults import place

    folder = tmp_path_factory.mktemp("models")
    place(smollm_path, folder / "SmolLM2-135M-Instruct.Q4_1.gguf")
    (folder / "smollm2-135m-instruct.yaml").write_text((ROOT / "models" / "smollm2-135m-instruct.yaml").read_text())
    (folder / "broken.yaml").write_text("name: [unclosed\n")
    return folder


@pytest.fixture(scope="session")
def server(chat_models_path):
    live = LiveServer(chat_models_path, "--parallel", "4", "--threads", "2")
    yield live
    live.stop()


@pytest.fixture(scope="session")
def whisper_model_path(tmp_path_factory) -> Path:
    """whisper tiny.en converted (as `build.py run` does) from the pinned CTranslate2 export."""
    from localai.defaults import install_whisper_model

    return install_whisper_model(tmp_path_factory.mktemp("whisper"))


@pytest.fixture(scope="session")
def bpe_gz() -> Path:
    """CLIP's BPE vocabulary (the pinned clip-anytorch wheel's bpe_simple_vocab_16e6.txt.gz)."""
    from localai.fetch import fetch_file

    return fetch_file("clip_bpe_vocab")


def _stablediffusion_requested() -> bool:
    """CI's BUILD_TAGS/GO_TAGS, or a build that says it made the image backend."""
    tags = f"{os.environ.get('BUILD_TAGS', '')} {os.environ.get('GO_TAGS', '')}".replace(",", " ").split()
    info = ROOT / "localai" / "_native" / "build-info.json"
    built = info.exists() and json.loads(info.read_text()).get("stablediffusion") is True
    return "stablediffusion" in tags or built


def pytest_runtest_setup(item):
    """Tests marked `stablediffusion` skip on builds without the image backend, but fail where it
    was asked for: a broken image build in CI must not pass as a skip."""
    if item.get_closest_marker("stablediffusion") is None:
        return
    from localai.backends.stablediffusion import available

    if available():
        return
    if _stablediffusion_requested():
        pytest.fail("the stablediffusion build was requested (BUILD_TAGS or build-info.json) but the sd-ncnn "
                    "bindings are missing: run `python3 build.py --stablediffusion` and read build/build.log")
    pytest.skip("image backend not built (build with `python3 build.py --stablediffusion`)")
