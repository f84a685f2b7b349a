"""Pure helpers of build.py: flags, LocalAI's build tags, cmake options."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("build_script", ROOT / "build.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


@pytest.mark.parametrize("env, expected", [
    ({}, False),
    ({"GO_TAGS": "stablediffusion"}, True),
    ({"BUILD_TAGS": "tts,stablediffusion"}, True),
    ({"BUILD_TAGS": "stablediffusion-extra"}, False),
])
def test_build_tags(env, expected):
    assert build.build_tags_want_sd(env) is expected


def test_defaults_are_native_release_without_sd(monkeypatch):
    monkeypatch.delenv("BUILD_TAGS", raising=False)
    monkeypatch.delenv("GO_TAGS", raising=False)
    args = build.parse_args([])
    opts = build.cmake_options(args, {})
    assert "-DLOCALAI_NATIVE=ON" in opts
    assert "-DCMAKE_BUILD_TYPE=Release" in opts
    assert "-DLOCALAI_STABLEDIFFUSION=OFF" in opts
    assert args.command == "build"


def test_portable_build_with_features_and_cmake_args():
    args = build.parse_args(["--no-native", "--cpu-features", "avx2,fma", "--debug", "--stablediffusion", "test", "-k", "x"])
    opts = build.cmake_options(args, {"CMAKE_ARGS": "-DGGML_LLAMAFILE=OFF -DFOO='a b'"})
    assert "-DLOCALAI_NATIVE=OFF" in opts
    assert "-DLOCALAI_CPU_FEATURES=AVX2;FMA" in opts
    assert "-DCMAKE_BUILD_TYPE=Debug" in opts
    assert "-DLOCALAI_STABLEDIFFUSION=ON" in opts
    assert opts[-2:] == ["-DGGML_LLAMAFILE=OFF", "-DFOO=a b"]
    assert args.command == "test" and args.rest == ["-k", "x"]


def test_cpu_features_need_a_portable_build():
    with pytest.raises(SystemExit):
        build.parse_args(["--cpu-features", "avx2"])


def test_unknown_cpu_feature_is_refused():
    with pytest.raises(SystemExit, match="unknown CPU feature"):
        build.parse_cpu_features("avx2,sse9")
