"""The tiny Stable Diffusion asset set and the image API's pure helpers (no native library needed)."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from localai import sdassets
from localai.api.http import error_info
from localai.errors import RequestError
from localai.api.routes.images import parse_size


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, bpe_gz):
    folder = tmp_path_factory.mktemp("sd-tiny")
    sdassets.write_tiny_assets(folder, seed=0, bpe_gz=bpe_gz)
    return folder


def _layers(text: str) -> list[list[str]]:
    lines = text.splitlines()
    assert lines[0] == "7767517"
    layer_count, blob_count = map(int, lines[1].split())
    layers = [line.split() for line in lines[2:]]
    assert len(layers) == layer_count
    blobs = {b for layer in layers for b in layer[4:4 + int(layer[2]) + int(layer[3])]}
    assert len(blobs) == blob_count
    return layers


def test_clip_vocab_matches_the_reference_vocab_txt(bpe_gz):
    vocab = sdassets.clip_vocab(bpe_gz)
    assert len(vocab) == 49408
    # the facts known of EdVince's vocab.txt: length with newlines, special and comma ids
    assert sum(len(token) + 1 for token in vocab) == 468478
    assert (vocab[267], vocab[49406], vocab[49407]) == (",</w>", "<|startoftext|>", "<|endoftext|>")
    assert vocab[0] == "!" and vocab[256] == "!</w>"
    assert len(set(vocab)) == len(vocab)
    # byte for byte the vocab.txt LocalAI's gallery pins for the real asset set
    text = "".join(token + "\n" for token in vocab).encode("utf-8")
    assert hashlib.sha256(text).hexdigest() == "e30e57b6f1e47616982ef898d8922be24e535b4fa3d0110477b3a6f02ebbae7d"


def test_log_sigmas_reproduce_sd_schedule():
    values = sdassets.log_sigmas()
    assert values.dtype == np.float32 and values.shape == (1000,)
    assert np.exp(values[0]) == pytest.approx(0.02917, abs=1e-5)
    assert np.exp(values[-1]) == pytest.approx(14.6146, abs=1e-4)
    assert np.all(np.diff(values) > 0)
    digest = hashlib.sha256(values.astype("<f4").tobytes()).hexdigest()
    assert digest.startswith("9a23cab6") and digest.endswith("3622")


def test_tiny_set_has_the_real_file_and_blob_names(tiny):
    assert sorted(p.name for p in tiny.iterdir()) == sorted(sdassets.ASSET_FILES)
    clip = _layers((tiny / "FrozenCLIPEmbedder-fp16.param").read_text())
    assert [layer[4] for layer in clip if layer[0] == "Input"] == ["token", "multiplier", "cond"]
    assert clip[-1][:6] == ["Concat", "cal_cat_0", "2", "1", "cond", "cal_12"] and clip[-1][6] == "conds"
    unet = _layers((tiny / "UNetModel-base-MHA-fp16.param").read_text())
    assert [layer[4] for layer in unet if layer[0] == "Input"] == ["in0", "in1", "in2", "c_in", "c_out"]
    assert any(layer[-1] == "44" or "44" in layer[4:] for layer in unet)
    assert unet[-1][:4] == ["BinaryOp", "add_x", "2", "1"] and unet[-1][6] == "outout"
    decoder = _layers((tiny / "AutoencoderKL-base-fp16.param").read_text())
    assert decoder[0][4] == "input.1" and decoder[-1][5] == "815"
    encoder = _layers((tiny / "AutoencoderKL-encoder-512-512-fp16.param").read_text())
    assert {"out0", "out1"} <= {blob for layer in encoder for blob in layer[4:]}


def test_size_variants_differ_only_in_reshape_numbers_and_hints(tiny):
    def strip(text: str) -> list[str]:
        out = []
        for line in text.splitlines():
            fields = [f for f in line.split() if not f.startswith("-23330=")]
            if fields and (fields[0] == "Reshape" or fields[:2] == ["Input", "in0"]):
                fields = [f for f in fields if not re.match(r"^[012]=", f)]
            out.append(" ".join(fields))
        return out

    base = (tiny / "UNetModel-base-MHA-fp16.param").read_text()
    for side in (256, 512):
        opt = (tiny / f"UNetModel-{side}-{side}-MHA-fp16-opt.param").read_text()
        assert strip(opt) == strip(base)
    # 32 transformer Reshapes whose numbers follow the latent size
    reshapes = [line for line in (tiny / "UNetModel-512-512-MHA-fp16-opt.param").read_text().splitlines()
                if line.startswith("Reshape")]
    assert len(reshapes) == 32
    assert "1=4096" in reshapes[0] and "1=64 2=64" in reshapes[1] and "1=64" in reshapes[12]


def test_weights_round_trip_through_the_bin(tiny):
    weights = sdassets.write_tiny_assets(tiny / "again", seed=0)
    data = (tiny / "again" / "FrozenCLIPEmbedder-fp16.bin").read_bytes()
    # MemoryData (raw fp32) first, then the Embed weight as a tagged fp16 block
    position = np.frombuffer(data[:77 * 8 * 4], dtype="<f4").reshape(77, 8)
    np.testing.assert_array_equal(position, weights.clip["position"])
    assert int.from_bytes(data[77 * 8 * 4:77 * 8 * 4 + 4], "little") == sdassets.FP16_TAG
    embed = np.frombuffer(data[77 * 8 * 4 + 4:77 * 8 * 4 + 4 + 49408 * 8 * 2], dtype="<f2").reshape(49408, 8)
    np.testing.assert_array_equal(embed.astype(np.float32), weights.clip["embed"])
    # the same seed writes the same bytes
    assert (tiny / "UNetModel-MHA-fp16.bin").read_bytes() == (tiny / "again" / "UNetModel-MHA-fp16.bin").read_bytes()


@pytest.mark.parametrize("value, expected", [
    ("256x256", (256, 256)), ("512x512", (512, 512)), ("384x256", (384, 256)), (" 256 x 320 ", (256, 320)),
    (None, (512, 512)), ("large", (512, 512)),  # LocalAI: no "x" means 512x512
])
def test_parse_size(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize("value", ["256x", "x256", "-256x256", "256x256x3", 256, ["256x256"]])
def test_parse_size_rejects(value):
    with pytest.raises(RequestError) as info:
        parse_size(value)
    assert error_info(info.value).status == 400 and info.value.param == "size"
