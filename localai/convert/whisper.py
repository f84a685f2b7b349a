"""Convert a CTranslate2 (faster-whisper) Whisper model folder to a whisper.cpp ggml file.

The default speech model is only published as a CTranslate2 export (``model.bin`` +
``tokenizer.json``), while whisper.cpp loads its own legacy ggml layout. Both formats are
simple enough to handle with numpy alone, so no torch / ctranslate2 install is needed.
Format facts (field order, dtypes, name mapping) are in ``model-formats.md`` (W.1–W.4).

    python -m localai.convert.whisper MODEL_DIR OUT.bin
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from localai.convert.bpe import bytes_to_unicode
from localai.errors import ConversionError
from localai.files import atomic_output, progress

__all__ = [
    "ConversionError",
    "GGML_MAGIC",
    "bytes_to_unicode",
    "convert_ct2_to_ggml",
    "decode_token",
    "ggml_tensors",
    "hparams_from_ct2",
    "load_vocab",
    "main",
    "mel_filters",
    "read_ct2",
]

GGML_MAGIC = 0x67676D6C  # "ggml" as a little-endian u32
CT2_BINARY_VERSION = 6
WHISPER_SPEC = "WhisperSpec"

# CTranslate2's DataType enum (include/ctranslate2/types.h). bfloat16 has no numpy
# dtype; it is read as raw u16 and widened in _to_float.
_CT2_DTYPES: dict[int, tuple[str, np.dtype]] = {
    0: ("float32", np.dtype("<f4")),
    1: ("int8", np.dtype("i1")),
    2: ("int16", np.dtype("<i2")),
    3: ("int32", np.dtype("<i4")),
    4: ("float16", np.dtype("<f2")),
    5: ("bfloat16", np.dtype("<u2")),
}
_BF16 = 5

_GGML_F32 = 0
_GGML_F16 = 1


# --------------------------------------------------------------------------- CT2 reader


class _Cursor:
    """Bounds-checked little-endian reads over a buffer, so a truncated file fails with
    a message naming what was being read instead of a struct.error or short array."""

    def __init__(self, buf: np.ndarray, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.size = len(buf)
        self.path = path

    def _need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise ConversionError(
                f"{self.path}: truncated while reading {what} "
                f"(needs {n} bytes at offset {self.pos}, file has {self.size})"
            )

    def unpack(self, fmt: str, what: str) -> tuple:
        n = struct.calcsize(fmt)
        self._need(n, what)
        out = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return out

    def string(self, what: str) -> str:
        (length,) = self.unpack("<H", what)
        self._need(length, what)
        raw = bytes(self.buf[self.pos:self.pos + length])
        self.pos += length
        # CT2 strings count their trailing NUL; anything else means we are out of sync.
        if length == 0 or raw[-1] != 0:
            raise ConversionError(f"{self.path}: malformed string for {what} at offset {self.pos - length}")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConversionError(f"{self.path}: {what} is not UTF-8") from exc

    def array(self, dtype: np.dtype, shape: tuple[int, ...], n_bytes: int, what: str) -> np.ndarray:
        self._need(n_bytes, what)
        count = int(np.prod(shape, dtype=np.int64))
        # frombuffer on the memmap is zero-copy: weights are paged in only when written out.
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos).reshape(shape)
        self.pos += n_bytes
        return arr


def read_ct2(path: str | os.PathLike, spec: str | None = WHISPER_SPEC) -> dict[str, np.ndarray | int | float]:
    """Parse a CTranslate2 ``model.bin`` (binary version 6).

    Returns ``{variable name: value}``: arrays (read-only, memory-mapped, PyTorch row-major
    shapes) for rank >= 1 and Python ``int``/``float`` for rank-0 scalars such as
    ``encoder/num_heads``. Aliases are resolved: ``decoder/projection/weight`` maps to the
    same array as its target. ``spec`` checks the spec name (``None`` accepts any).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConversionError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise ConversionError(f"{path}: empty file")
    buf = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(buf, path)

    (version,) = cur.unpack("<I", "binary version")
    if version != CT2_BINARY_VERSION:
        # Older binary versions lay out strings/dtypes differently; refusing beats misreading.
        raise ConversionError(
            f"{path}: CTranslate2 binary version {version} is not supported (expected {CT2_BINARY_VERSION}); "
            f"re-export the model with a recent ct2-transformers-converter"
        )
    spec_name = cur.string("spec name")
    if spec is not None and spec_name != spec:
        raise ConversionError(f"{path}: model spec is {spec_name!r}, expected {spec!r}")
    cur.unpack("<I", "spec revision")
    (n_vars,) = cur.unpack("<I", "variable count")

    out: dict[str, np.ndarray | int | float] = {}
    for _ in range(n_vars):
        name = cur.string("variable name")
        (rank,) = cur.unpack("<B", f"rank of {name}")
        shape = cur.unpack(f"<{rank}I", f"shape of {name}") if rank else ()
        (dtype_id,) = cur.unpack("<B", f"dtype of {name}")
        if dtype_id not in _CT2_DTYPES:
            raise ConversionError(f"{path}: {name} has unknown dtype id {dtype_id}")
        dtype = _CT2_DTYPES[dtype_id][1]
        (n_bytes,) = cur.unpack("<I", f"byte count of {name}")
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if n_bytes != expected:
            raise ConversionError(
                f"{path}: {name} declares {n_bytes} bytes but shape {list(shape)} of "
                f"{_CT2_DTYPES[dtype_id][0]} needs {expected}"
            )
        arr = cur.array(dtype, shape, n_bytes, f"data of {name}")
        if dtype_id == _BF16:
            arr = _bf16_to_f32(arr)
        if name in out:
            raise ConversionError(f"{path}: duplicate variable {name}")
        out[name] = arr.item() if rank == 0 else arr

    (n_aliases,) = cur.unpack("<I", "alias count")
    for _ in range(n_aliases):
        alias = cur.string("alias name")
        target = cur.string(f"target of alias {alias}")
        if target not in out:
            raise ConversionError(f"{path}: alias {alias} points to missing variable {target}")
        out[alias] = out[target]

    if cur.pos != size:
        # Trailing bytes mean a layout we do not understand (or a concatenation gone wrong).
        raise ConversionError(f"{path}: {size - cur.pos} unexpected bytes after the last alias")
    return out


def _bf16_to_f32(arr: np.ndarray) -> np.ndarray:
    # bfloat16 is the top half of a float32, so widening is a 16-bit shift.
    return (arr.astype(np.uint32) << 16).view(np.float32)


# --------------------------------------------------------------------------- vocab


@lru_cache(maxsize=1)
def _unicode_to_bytes() -> dict[str, int]:
    return {ch: b for b, ch in bytes_to_unicode().items()}


def decode_token(token: str) -> bytes:
    """The raw bytes of one byte-level BPE token string (inverse of ``bytes_to_unicode``)."""
    table = _unicode_to_bytes()
    try:
        return bytes(table[ch] for ch in token)
    except KeyError as exc:
        raise ConversionError(f"token {token!r} has a character outside the byte-level alphabet: {exc}") from None


def load_vocab(tokenizer_json: str | os.PathLike) -> list[bytes]:
    """Regular (non-added) tokens of a HF byte-level BPE ``tokenizer.json``, in id order.

    whisper.cpp synthesises the special tokens itself for ids >= the count written, so
    only ids below the first added token are returned.
    """
    path = Path(tokenizer_json)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        vocab: dict[str, int] = data["model"]["vocab"]
        added = [int(t["id"]) for t in data.get("added_tokens", [])]
    except FileNotFoundError:
        raise ConversionError(f"{path} is missing (the vocabulary is read from it)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConversionError(f"{path}: not a usable tokenizer.json ({exc!r})") from exc
    if data["model"].get("type") != "BPE":
        raise ConversionError(f"{path}: expected a BPE tokenizer, got {data['model'].get('type')!r}")
    n_regular = min(added) if added else len(vocab)
    by_id: list[str | None] = [None] * n_regular
    for token, idx in vocab.items():
        if 0 <= idx < n_regular:
            by_id[idx] = token
    missing = [i for i, t in enumerate(by_id) if t is None]
    if missing:
        # whisper.cpp maps token id -> position in the list, so a gap would shift every later id.
        raise ConversionError(f"{path}: vocab has no token for ids {missing[:5]} (ids must be contiguous)")
    return [decode_token(t) for t in by_id]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- mel filters


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    # Slaney scale: linear below 1 kHz, logarithmic above (librosa htk=False).
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / f_sp
    log_part = hz >= min_log_hz
    mel[log_part] = min_log_mel + np.log(hz[log_part] / min_log_hz) / logstep
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * f_sp
    log_part = mel >= min_log_mel
    hz[log_part] = min_log_hz * np.exp(logstep * (mel[log_part] - min_log_mel))
    return hz


def mel_filters(n_mels: int, sample_rate: int = 16000, n_fft: int = 400,
                fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank, float32 ``[n_mels, n_fft // 2 + 1]``.

    Same definition as ``librosa.filters.mel`` defaults (what openai-whisper's
    ``mel_filters.npz`` holds), so whisper.cpp gets the filters the model was trained with.
    """
    if n_mels < 1:
        raise ValueError("n_mels must be positive")
    fmax = sample_rate / 2 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    # n_mels + 2 edges: filter i rises from edge i to i+1 and falls to i+2.
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([fmin]))[0], _hz_to_mel(np.array([fmax]))[0], n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    # Rounding to float32 *before* normalising follows librosa's order of operations, which
    # makes the result bit-identical to openai-whisper's mel_filters.npz (not just 2e-9 close).
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    # Slaney norm: each triangle has unit area in Hz, so wide high filters are not louder.
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights


# --------------------------------------------------------------------------- mapping


_LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/")


def _layer_count(ct2: dict, side: str) -> int:
    found = {int(m.group(2)) for name in ct2 if (m := _LAYER.match(name)) and m.group(1) == side}
    if not found:
        raise ConversionError(f"model has no {side} layers ({side}/layer_0/... missing)")
    if found != set(range(len(found))):
        raise ConversionError(f"{side} layers are not numbered 0..{len(found) - 1}: {sorted(found)}")
    return len(found)


def _get(ct2: dict, name: str, ndim: int | None = None) -> np.ndarray:
    if name not in ct2:
        raise ConversionError(f"model.bin has no variable {name} (not a complete Whisper model?)")
    value = ct2[name]
    if ndim is not None and (not isinstance(value, np.ndarray) or value.ndim != ndim):
        shape = list(value.shape) if isinstance(value, np.ndarray) else "a scalar"
        raise ConversionError(f"{name} should be {ndim}-D, got {shape}")
    return value


def _scalar(ct2: dict, name: str) -> int:
    value = ct2.get(name)
    if value is None:
        raise ConversionError(f"model.bin has no scalar {name}")
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ConversionError(f"{name} should be a scalar, got shape {list(value.shape)}")
        value = value.item()
    return int(value)


def hparams_from_ct2(ct2: dict) -> dict[str, int]:
    """whisper.cpp's 11 header fields, in file order, derived from tensor shapes."""
    enc_pos = _get(ct2, "encoder/position_encodings/encodings", 2)
    dec_pos = _get(ct2, "decoder/position_encodings/encodings", 2)
    emb = _get(ct2, "decoder/embeddings/weight", 2)
    conv1 = _get(ct2, "encoder/conv1/weight", 3)
    hp = {
        "n_vocab": emb.shape[0],
        "n_audio_ctx": enc_pos.shape[0],
        "n_audio_state": enc_pos.shape[1],
        "n_audio_head": _scalar(ct2, "encoder/num_heads"),
        "n_audio_layer": _layer_count(ct2, "encoder"),
        "n_text_ctx": dec_pos.shape[0],
        "n_text_state": emb.shape[1],
        "n_text_head": _scalar(ct2, "decoder/num_heads"),
        "n_text_layer": _layer_count(ct2, "decoder"),
        "n_mels": conv1.shape[1],
        "ftype": 1,  # f16 weights; 1-D tensors stay f32 regardless (see _ggml_dtype)
    }
    for state, head in (("n_audio_state", "n_audio_head"), ("n_text_state", "n_text_head")):
        if hp[head] < 1 or hp[state] % hp[head]:
            raise ConversionError(f"{head}={hp[head]} does not divide {state}={hp[state]}")
    return hp


def _check_float_weights(ct2: dict) -> None:
    """Refuse quantized exports: their int weights need per-row scales we would have to guess."""
    scales = sorted(n for n in ct2 if n.endswith("_scale"))
    ints = sorted(
        n for n, v in ct2.items()
        if isinstance(v, np.ndarray) and v.ndim >= 2 and not np.issubdtype(v.dtype, np.floating)
    )
    if scales or ints:
        example = (ints or scales)[0]
        dtype = ct2[example].dtype if isinstance(ct2[example], np.ndarray) else "scale"
        raise ConversionError(
            f"quantized CTranslate2 model ({example} is {dtype}; {len(ints)} integer weights, "
            f"{len(scales)} *_scale variables): only float16/float32/bfloat16 models are supported. "
            f"Use a float16 export (ct2-transformers-converter --quantization float16)."
        )


def _split_rows(w: np.ndarray, parts: int, name: str) -> list[np.ndarray]:
    if w.shape[0] % parts:
        raise ConversionError(f"{name}: {w.shape[0]} rows cannot be split into {parts} equal blocks")
    n = w.shape[0] // parts
    return [w[i * n:(i + 1) * n] for i in range(parts)]


def _attention(ct2: dict, src: str, dst: str, fused_qkv: bool) -> Iterator[tuple[str, np.ndarray]]:
    """One attention block. whisper.cpp has no key bias: it is dropped, which is exact even
    when non-zero because q·b_k shifts every logit of a query equally and softmax ignores it."""
    if fused_qkv:
        w = _get(ct2, f"{src}/linear_0/weight", 2)
        b = _get(ct2, f"{src}/linear_0/bias", 1)
        (wq, wk, wv), (bq, _, bv) = _split_rows(w, 3, src), _split_rows(b, 3, src)
        out = f"{src}/linear_1"
    else:  # cross-attention: query from the decoder, fused key/value from the encoder output
        wq, bq = _get(ct2, f"{src}/linear_0/weight", 2), _get(ct2, f"{src}/linear_0/bias", 1)
        (wk, wv), (_, bv) = (_split_rows(_get(ct2, f"{src}/linear_1/weight", 2), 2, src),
                             _split_rows(_get(ct2, f"{src}/linear_1/bias", 1), 2, src))
        out = f"{src}/linear_2"
    yield f"{dst}.query.weight", wq
    yield f"{dst}.query.bias", bq
    yield f"{dst}.key.weight", wk
    yield f"{dst}.value.weight", wv
    yield f"{dst}.value.bias", bv
    yield f"{dst}.out.weight", _get(ct2, f"{out}/weight", 2)
    yield f"{dst}.out.bias", _get(ct2, f"{out}/bias", 1)


def _norm(ct2: dict, src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", _get(ct2, f"{src}/gamma", 1)
    yield f"{dst}.bias", _get(ct2, f"{src}/beta", 1)


def _linear(ct2: dict, src: str, dst: str) -> Iterator[tuple[str, np.ndarray]]:
    yield f"{dst}.weight", _get(ct2, f"{src}/weight", 2)
    yield f"{dst}.bias", _get(ct2, f"{src}/bias", 1)


def ggml_tensors(ct2: dict) -> list[tuple[str, np.ndarray]]:
    """``(whisper.cpp name, array)`` for every tensor whisper.cpp expects, in numpy shape
    order (the ggml ``ne`` is this shape reversed). dtypes are still the source ones."""
    hp = hparams_from_ct2(ct2)
    out: list[tuple[str, np.ndarray]] = [
        ("encoder.positional_embedding", _get(ct2, "encoder/position_encodings/encodings", 2)),
    ]
    for i in (1, 2):
        out.append((f"encoder.conv{i}.weight", _get(ct2, f"encoder/conv{i}/weight", 3)))
        # whisper.cpp declares conv biases as [1, n_state] (ne), i.e. numpy [n_state, 1],
        # so they broadcast over time in ggml_add.
        bias = _get(ct2, f"encoder/conv{i}/bias", 1)
        out.append((f"encoder.conv{i}.bias", bias.reshape(-1, 1)))
    for i in range(hp["n_audio_layer"]):
        src, dst = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        out += _norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        out += _attention(ct2, f"{src}/self_attention", f"{dst}.attn", fused_qkv=True)
        out += _norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
        out += _linear(ct2, f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        out += _linear(ct2, f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    out += _norm(ct2, "encoder/layer_norm", "encoder.ln_post")

    out.append(("decoder.positional_embedding", _get(ct2, "decoder/position_encodings/encodings", 2)))
    out.append(("decoder.token_embedding.weight", _get(ct2, "decoder/embeddings/weight", 2)))
    for i in range(hp["n_text_layer"]):
        src, dst = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        out += _norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.attn_ln")
        out += _attention(ct2, f"{src}/self_attention", f"{dst}.attn", fused_qkv=True)
        out += _norm(ct2, f"{src}/attention/layer_norm", f"{dst}.cross_attn_ln")
        out += _attention(ct2, f"{src}/attention", f"{dst}.cross_attn", fused_qkv=False)
        out += _norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.mlp_ln")
        out += _linear(ct2, f"{src}/ffn/linear_0", f"{dst}.mlp.0")
        out += _linear(ct2, f"{src}/ffn/linear_1", f"{dst}.mlp.2")
    out += _norm(ct2, "decoder/layer_norm", "decoder.ln")
    _check_shapes(out, hp)
    return out


def _expected_shape(name: str, hp: dict[str, int]) -> tuple[int, ...]:
    """The numpy shape whisper.cpp's loader will insist on (it checks every ne)."""
    a, t = hp["n_audio_state"], hp["n_text_state"]
    if name == "encoder.positional_embedding":
        return (hp["n_audio_ctx"], a)
    if name == "decoder.positional_embedding":
        return (hp["n_text_ctx"], t)
    if name == "decoder.token_embedding.weight":
        return (hp["n_vocab"], t)
    if name == "encoder.conv1.weight":
        return (a, hp["n_mels"], 3)
    if name == "encoder.conv2.weight":
        return (a, a, 3)
    if name.startswith("encoder.conv"):
        return (a, 1)
    n = a if name.startswith("encoder.") else t
    if ".mlp.0.weight" in name:
        return (4 * n, n)
    if ".mlp.0.bias" in name:
        return (4 * n,)
    if ".mlp.2.weight" in name:
        return (n, 4 * n)
    return (n, n) if name.endswith(".weight") and ("attn." in name) else (n,)


def _check_shapes(tensors: list[tuple[str, np.ndarray]], hp: dict[str, int]) -> None:
    for name, arr in tensors:
        if not np.issubdtype(arr.dtype, np.floating):
            raise ConversionError(f"{name}: source dtype {arr.dtype} is not a float type (quantized model?)")
        want = _expected_shape(name, hp)
        if arr.shape != want:
            raise ConversionError(f"{name}: shape {list(arr.shape)} but whisper.cpp expects {list(want)}")


def _ggml_dtype(name: str, arr: np.ndarray) -> int:
    # What whisper.cpp's loader declares: matrices and conv kernels in the file's wtype,
    # everything 1-D plus conv biases and both position tables in f32.
    if name.endswith("positional_embedding") or arr.ndim < 2 or (".conv" in name and name.endswith(".bias")):
        return _GGML_F32
    return _GGML_F16


def _to_float(arr: np.ndarray, ttype: int) -> np.ndarray:
    dtype = np.dtype("<f4") if ttype == _GGML_F32 else np.dtype("<f2")
    return np.ascontiguousarray(arr, dtype=dtype)


# --------------------------------------------------------------------------- writer


def _write_ggml(fh, hp: dict[str, int], filters: np.ndarray, vocab: list[bytes],
                tensors: list[tuple[str, np.ndarray]]) -> None:
    fh.write(struct.pack("<I", GGML_MAGIC))
    fh.write(struct.pack("<11i", *hp.values()))
    fh.write(struct.pack("<2i", *filters.shape))
    fh.write(np.ascontiguousarray(filters, dtype="<f4").tobytes())
    fh.write(struct.pack("<i", len(vocab)))
    for token in vocab:
        fh.write(struct.pack("<I", len(token)))
        fh.write(token)
    for name, arr in progress(tensors, desc="ggml tensors", unit="tensor"):
        ttype = _ggml_dtype(name, arr)
        data = _to_float(arr, ttype)
        raw_name = name.encode("utf-8")
        fh.write(struct.pack(f"<3i{data.ndim}i", data.ndim, len(raw_name), ttype, *reversed(data.shape)))
        fh.write(raw_name)
        fh.write(data.data)


def convert_ct2_to_ggml(model_dir: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Convert a faster-whisper model folder (``model.bin`` + ``tokenizer.json``) to a
    whisper.cpp ggml file (f16 weights) at ``out_path``; returns the written path.

    Everything is read and validated before the output is opened, and the file is written
    to a temporary name beside ``out_path`` and renamed, so a failure never leaves a
    partial model where whisper.cpp would find it.
    """
    model_dir, out_path = Path(model_dir), Path(out_path)
    if not model_dir.is_dir():
        raise ConversionError(f"{model_dir} is not a folder (expected a faster-whisper model folder)")
    ct2 = read_ct2(model_dir / "model.bin")
    _check_float_weights(ct2)
    hp = hparams_from_ct2(ct2)
    tensors = ggml_tensors(ct2)
    vocab = load_vocab(model_dir / "tokenizer.json")
    if len(vocab) > hp["n_vocab"]:
        raise ConversionError(f"tokenizer has {len(vocab)} regular tokens but the model only {hp['n_vocab']} embeddings")
    filters = mel_filters(hp["n_mels"])

    with atomic_output(out_path, sync=True) as fh:
        _write_ggml(fh, hp, filters, vocab, tensors)
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localai.convert.whisper",
        description="Convert a CTranslate2 (faster-whisper) Whisper model folder to a whisper.cpp ggml file.",
    )
    parser.add_argument("model_dir", help="folder with model.bin and tokenizer.json")
    parser.add_argument("out", help="ggml file to write (e.g. models/ggml-tiny.en.bin)")
    args = parser.parse_args(argv)
    try:
        path = convert_ct2_to_ggml(args.model_dir, args.out)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
