"""Tests for the sentence-transformers BERT -> GGUF converter (localai.convert.bert).

Pure helpers are tested on small inputs; a tiny synthetic model folder covers the error
paths of a whole conversion; the real all-MiniLM-L6-v2 (pinned wheel, via
localai.fetch) is converted once per module and read back with gguf.GGUFReader.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import gguf  # a hard dependency: a missing install must fail here, not skip
import numpy as np
import pytest

from localai.convert import bert
from localai.convert.bert import (
    ConversionError,
    convert_bert_to_gguf,
    gguf_dtype,
    map_tensor_name,
    read_safetensors,
    vocab_to_gguf,
)

F16, F32 = gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32
VT = gguf.GGUFValueType

# ---------------------------------------------------------------- helpers


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]], header_extra: dict | None = None) -> None:
    """A minimal safetensors writer: {name: (dtype name, array whose bytes are stored)}."""
    header: dict = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, (dtype, arr) in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header.update(header_extra or {})
    hbytes = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(hbytes)) + hbytes + b"".join(blobs))


TINY_VOCAB = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s"]


def make_tiny_model(folder: Path, *, n_layer: int = 2, n_embd: int = 8, n_ff: int = 16, n_vocab: int = 10,
                    dtype: str = "F32", pooling: str = "mean_tokens", extra_tensors: dict | None = None,
                    drop: tuple[str, ...] = (), config_patch: dict | None = None) -> Path:
    """A complete (random-weight) sentence-transformers BERT folder, small enough for unit tests."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
              "hidden_size": n_embd, "intermediate_size": n_ff, "num_attention_heads": 2,
              "num_hidden_layers": n_layer, "max_position_embeddings": 16, "type_vocab_size": 2,
              "vocab_size": n_vocab, "layer_norm_eps": 1e-12, "position_embedding_type": "absolute"}
    config.update(config_patch or {})
    (folder / "config.json").write_text(json.dumps(config))
    specials = {"[PAD]": 0, "[UNK]": 2, "[CLS]": 3, "[SEP]": 4, "[MASK]": 5}
    tokenizer = {
        "added_tokens": [{"id": i, "content": t, "special": True} for t, i in specials.items()],
        "normalizer": {"type": "BertNormalizer", "lowercase": True, "strip_accents": None},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
        },
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "vocab": {t: i for i, t in enumerate(TINY_VOCAB)}},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]", "pad_token": "[PAD]", "mask_token": "[MASK]"}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": n_embd, **{f"pooling_mode_{m}": m == pooling
                                                for m in ("cls_token", "mean_tokens", "max_tokens", "lasttoken")}}))

    rng = np.random.default_rng(0)
    shapes = {"embeddings.word_embeddings.weight": (n_vocab, n_embd),
              "embeddings.position_embeddings.weight": (16, n_embd),
              "embeddings.token_type_embeddings.weight": (2, n_embd),
              "embeddings.LayerNorm.weight": (n_embd,), "embeddings.LayerNorm.bias": (n_embd,),
              "pooler.dense.weight": (n_embd, n_embd), "pooler.dense.bias": (n_embd,)}
    for i in range(n_layer):
        p = f"encoder.layer.{i}."
        for sub, (o, n) in {"attention.self.query": (n_embd, n_embd), "attention.self.key": (n_embd, n_embd),
                            "attention.self.value": (n_embd, n_embd), "attention.output.dense": (n_embd, n_embd),
                            "intermediate.dense": (n_ff, n_embd), "output.dense": (n_embd, n_ff)}.items():
            shapes[p + sub + ".weight"], shapes[p + sub + ".bias"] = (o, n), (o,)
        for sub in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + sub + ".weight"], shapes[p + sub + ".bias"] = (n_embd,), (n_embd,)
    tensors: dict[str, tuple[str, np.ndarray]] = {
        "embeddings.position_ids": ("I64", np.arange(16, dtype=np.int64)[None])}
    for name, shape in shapes.items():
        if name in drop:
            continue
        arr = rng.standard_normal(shape).astype(np.float32)
        if dtype == "BF16":
            tensors[name] = ("BF16", (arr.view(np.uint32) >> 16).astype(np.uint16))
        elif dtype == "F16":
            tensors[name] = ("F16", arr.astype(np.float16))
        else:
            tensors[name] = ("F32", arr)
    tensors.update(extra_tensors or {})
    write_safetensors(folder / "model.safetensors", tensors)
    return folder


def kv(reader: gguf.GGUFReader) -> dict:
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def kv_types(reader: gguf.GGUFReader) -> dict:
    return {k: [VT(t) for t in f.types] for k, f in reader.fields.items() if not k.startswith("GGUF.")}


# ---------------------------------------------------------------- name mapping and dtypes

@pytest.mark.parametrize("hf, expected", [
    ("embeddings.word_embeddings.weight", "token_embd.weight"),
    ("embeddings.position_embeddings.weight", "position_embd.weight"),
    ("embeddings.token_type_embeddings.weight", "token_types.weight"),
    ("embeddings.LayerNorm.weight", "token_embd_norm.weight"),
    ("embeddings.LayerNorm.bias", "token_embd_norm.bias"),
    ("encoder.layer.0.attention.self.query.weight", "blk.0.attn_q.weight"),
    ("encoder.layer.1.attention.self.query.bias", "blk.1.attn_q.bias"),
    ("encoder.layer.2.attention.self.key.weight", "blk.2.attn_k.weight"),
    ("encoder.layer.3.attention.self.value.bias", "blk.3.attn_v.bias"),
    ("encoder.layer.4.attention.output.dense.weight", "blk.4.attn_output.weight"),
    ("encoder.layer.5.attention.output.LayerNorm.weight", "blk.5.attn_output_norm.weight"),
    ("encoder.layer.5.attention.output.LayerNorm.bias", "blk.5.attn_output_norm.bias"),
    ("encoder.layer.11.intermediate.dense.weight", "blk.11.ffn_up.weight"),
    ("encoder.layer.0.output.dense.bias", "blk.0.ffn_down.bias"),
    ("encoder.layer.0.output.LayerNorm.weight", "blk.0.layer_output_norm.weight"),
    # BertFor* prefix and TensorFlow-era gamma/beta names
    ("bert.embeddings.word_embeddings.weight", "token_embd.weight"),
    ("bert.encoder.layer.3.output.LayerNorm.gamma", "blk.3.layer_output_norm.weight"),
    ("embeddings.LayerNorm.beta", "token_embd_norm.bias"),
    # dropped: unused by llama.cpp's bert graph
    ("embeddings.position_ids", None),
    ("pooler.dense.weight", None),
    ("pooler.dense.bias", None),
    ("bert.pooler.dense.weight", None),
    ("cls.predictions.transform.dense.weight", None),
])
def test_map_tensor_name(hf: str, expected: str | None) -> None:
    assert map_tensor_name(hf) == expected


@pytest.mark.parametrize("hf", ["encoder.layer.0.attention.self.rotary.weight", "lm_head.weight",
                                "encoder.layer.x.output.dense.weight", "embeddings.word_embeddings"])
def test_map_tensor_name_unknown(hf: str) -> None:
    with pytest.raises(ConversionError, match="unknown tensor name"):
        map_tensor_name(hf)


@pytest.mark.parametrize("name, ndim, f16_type", [
    ("token_embd.weight", 2, np.float16),
    ("blk.0.attn_q.weight", 2, np.float16),
    ("blk.0.ffn_down.weight", 2, np.float16),
    ("position_embd.weight", 2, np.float32),
    ("token_types.weight", 2, np.float32),
    ("token_embd_norm.weight", 1, np.float32),
    ("blk.0.attn_output_norm.weight", 1, np.float32),
    ("blk.0.layer_output_norm.bias", 1, np.float32),
    ("blk.0.attn_q.bias", 1, np.float32),
    ("blk.0.attn_output_norm.weight", 2, np.float32),  # *_norm.weight never f16, whatever its rank
    ("blk.0.some.bias", 2, np.float32),  # non-.weight never f16
])
def test_gguf_dtype(name: str, ndim: int, f16_type: type) -> None:
    assert gguf_dtype(name, ndim, "f16") == f16_type
    assert gguf_dtype(name, ndim, "f32") == np.float32


def test_gguf_dtype_bad_outtype() -> None:
    with pytest.raises(ConversionError, match="q8_0"):
        gguf_dtype("token_embd.weight", 2, "q8_0")


# ---------------------------------------------------------------- vocab

def test_vocab_to_gguf() -> None:
    tokens = ["[PAD]", "[unused0]", "hello", "##ing", "[CLS]", "##", "#", "\u00e9t\u00e9", None, "<extra>"]
    out, types = vocab_to_gguf(tokens, control_ids={0, 4}, user_defined_ids={9})
    assert out == ["[PAD]", "\u2581[unused0]", "\u2581hello", "ing", "[CLS]", "", "\u2581#",
                   "\u2581\u00e9t\u00e9", "\u2581[PAD8]", "\u2581<extra>"]
    assert types == [3, 1, 1, 1, 3, 1, 1, 1, 5, 4]


def test_vocab_to_gguf_control_is_verbatim_even_with_hashes() -> None:
    assert vocab_to_gguf(["##x"], control_ids={0}) == (["##x"], [3])


# ---------------------------------------------------------------- safetensors reader

def test_read_safetensors_dtypes(tmp_path: Path) -> None:
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    f16 = np.array([1.5, -2.25, 65504.0], dtype=np.float16)
    bf16_src = np.array([[1.0, -3.5], [2.0 ** 100, 2.0 ** -20]], dtype=np.float32)
    bf16 = (bf16_src.view(np.uint32) >> 16).astype(np.uint16)
    i64 = np.arange(4, dtype=np.int64)
    path = tmp_path / "m.safetensors"
    write_safetensors(path, {"a": ("F32", f32), "b": ("F16", f16), "c": ("BF16", bf16), "d": ("I64", i64),
                             "e": ("F32", np.zeros((0, 3), np.float32)), "f": ("F32", np.float32(4.0).reshape(()))})
    st = read_safetensors(path)
    assert list(st) == ["a", "b", "c", "d", "e", "f"]
    np.testing.assert_array_equal(st["a"], f32)
    assert st["a"].dtype == np.float32
    np.testing.assert_array_equal(st["b"], f16)
    assert st["b"].dtype == np.float16
    assert st["c"].dtype == np.float32  # bf16 widened; these values are exact in bf16
    np.testing.assert_array_equal(st["c"], bf16_src)
    np.testing.assert_array_equal(st["d"], i64)
    assert st["e"].shape == (0, 3)
    assert st["f"].shape == () and st["f"] == 4.0


def _corrupt(path: Path, how: str) -> None:
    good = np.ones((2, 2), np.float32)
    if how == "too_short":
        path.write_bytes(b"\x01\x02")
    elif how == "huge_header_len":
        path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    elif how == "zero_header_len":
        path.write_bytes(struct.pack("<Q", 0) + b"{}")
    elif how == "not_json":
        path.write_bytes(struct.pack("<Q", 5) + b"{oops" + bytes(16))
    elif how == "not_object":
        path.write_bytes(struct.pack("<Q", 2) + b"[]")
    elif how == "bad_dtype":
        write_safetensors(path, {"w": ("F32", good)}, {"w": {"dtype": "F8_E4M3", "shape": [2, 2], "data_offsets": [0, 4]}})
    elif how == "offsets_out_of_range":
        write_safetensors(path, {"w": ("F32", good)}, {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}})
    elif how == "size_mismatch":
        write_safetensors(path, {"w": ("F32", good)}, {"w": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 16]}})
    elif how == "bad_shape":
        write_safetensors(path, {"w": ("F32", good)}, {"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}})
    elif how == "truncated_data":
        write_safetensors(path, {"w": ("F32", good)})
        path.write_bytes(path.read_bytes()[:-4])
    else:  # pragma: no cover
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["too_short", "huge_header_len", "zero_header_len", "not_json", "not_object",
                                 "bad_dtype", "offsets_out_of_range", "size_mismatch", "bad_shape", "truncated_data"])
def test_read_safetensors_corrupt(tmp_path: Path, how: str) -> None:
    path = tmp_path / "bad.safetensors"
    _corrupt(path, how)
    with pytest.raises(ConversionError, match="bad.safetensors"):
        read_safetensors(path)


def test_read_safetensors_missing(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="cannot read"):
        read_safetensors(tmp_path / "nope.safetensors")


# ---------------------------------------------------------------- whole conversion, tiny synthetic model

@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
@pytest.mark.parametrize("outtype", ["f16", "f32"])
def test_tiny_conversion(tmp_path: Path, dtype: str, outtype: str) -> None:
    model = make_tiny_model(tmp_path / "tiny", dtype=dtype)
    out = convert_bert_to_gguf(model, tmp_path / "out" / "tiny.gguf", outtype=outtype, name="tiny")
    assert out == tmp_path / "out" / "tiny.gguf"
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.gguf"]  # no temp file left
    reader = gguf.GGUFReader(out)
    values = kv(reader)
    assert values["general.name"] == "tiny"
    assert values["general.file_type"] == (1 if outtype == "f16" else 0)
    assert values["bert.block_count"] == 2
    assert values["bert.pooling_type"] == 1
    # config vocab_size 10 > 9 tokenizer ids: the hole becomes an UNUSED placeholder
    assert values["tokenizer.ggml.tokens"] == ["[PAD]", "\u2581[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                               "\u2581hello", "\u2581world", "s", "\u2581[PAD9]"]
    assert values["tokenizer.ggml.token_type"] == [3, 1, 3, 3, 3, 3, 1, 1, 1, 5]
    assert [values[f"tokenizer.ggml.{k}_token_id"] for k in ("bos", "eos", "unknown", "seperator", "padding", "mask")] \
        == [3, 4, 2, 4, 0, 5]
    assert len(reader.tensors) == 5 + 16 * 2
    st = read_safetensors(model / "model.safetensors")
    by_name = {t.name: t for t in reader.tensors}
    for hf_name, arr in st.items():
        gname = map_tensor_name(hf_name)
        if gname is None:
            continue
        t = by_name[gname]
        want = arr.astype(gguf_dtype(gname, arr.ndim, outtype))
        np.testing.assert_array_equal(np.asarray(t.data).reshape(want.shape), want)


@pytest.mark.parametrize("pooling, expected", [("cls_token", 2), ("lasttoken", 3)])
def test_tiny_pooling(tmp_path: Path, pooling: str, expected: int) -> None:
    model = make_tiny_model(tmp_path / "tiny", pooling=pooling)
    out = convert_bert_to_gguf(model, tmp_path / "t.gguf")
    assert kv(gguf.GGUFReader(out))["bert.pooling_type"] == expected


def _assert_fails_cleanly(model: Path, out_dir: Path, match: str) -> None:
    """The conversion fails with ConversionError and leaves the old output and no temp file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    old = out_dir / "model.gguf"
    old.write_bytes(b"previous model")
    with pytest.raises(ConversionError, match=match):
        convert_bert_to_gguf(model, old)
    assert old.read_bytes() == b"previous model"
    assert sorted(p.name for p in out_dir.iterdir()) == ["model.gguf"]


def test_unknown_tensor_name(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny", extra_tensors={"encoder.layer.0.adapter.weight": ("F32", np.ones(3, np.float32))})
    _assert_fails_cleanly(model, tmp_path / "out", "unknown tensor name 'encoder.layer.0.adapter.weight'")


def test_missing_tensor(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny", drop=("encoder.layer.1.output.dense.weight",))
    _assert_fails_cleanly(model, tmp_path / "out", r"missing \['blk.1.ffn_down.weight'\]")


def test_layer_count_mismatch(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny", config_patch={"num_hidden_layers": 3})
    _assert_fails_cleanly(model, tmp_path / "out", "missing")


def test_shape_mismatch(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny", config_patch={"intermediate_size": 32})
    _assert_fails_cleanly(model, tmp_path / "out", r"ffn_(up|down)\.weight: shape")


def test_f16_overflow(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny")
    st = {k: (("I64" if v.dtype == np.int64 else "F32"), np.array(v)) for k, v in
          read_safetensors(model / "model.safetensors").items()}
    st["encoder.layer.0.output.dense.weight"][1][0, 0] = 1e6
    write_safetensors(model / "model.safetensors", st)
    _assert_fails_cleanly(model, tmp_path / "out", "overflow float16")
    convert_bert_to_gguf(model, tmp_path / "f32.gguf", outtype="f32")  # f32 keeps it


@pytest.mark.parametrize("patch", [{"model_type": "roberta"}, {"architectures": ["NomicBertModel"]},
                                   {"position_embedding_type": "relative_key"}, {"hidden_act": "relu"}])
def test_unsupported_config(tmp_path: Path, patch: dict) -> None:
    model = make_tiny_model(tmp_path / "tiny", config_patch=patch)
    _assert_fails_cleanly(model, tmp_path / "out", "BERT|unsupported")


def test_unsupported_pooling(tmp_path: Path) -> None:
    model = make_tiny_model(tmp_path / "tiny", pooling="max_tokens")
    _assert_fails_cleanly(model, tmp_path / "out", "pooling")


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json"])
def test_missing_file(tmp_path: Path, missing: str) -> None:
    model = make_tiny_model(tmp_path / "tiny")
    (model / missing).unlink()
    _assert_fails_cleanly(model, tmp_path / "out", f"missing {Path(missing).name}|{missing}")


def test_vocab_txt_fallback(tmp_path: Path) -> None:
    """Without tokenizer.json the vocab comes from vocab.txt and BertTokenizer's defaults."""
    model = make_tiny_model(tmp_path / "tiny", n_vocab=9)
    (model / "tokenizer.json").unlink()
    (model / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n", encoding="utf-8")
    values = kv(gguf.GGUFReader(convert_bert_to_gguf(model, tmp_path / "t.gguf")))
    assert values["tokenizer.ggml.tokens"][:4] == ["[PAD]", "\u2581[unused0]", "[UNK]", "[CLS]"]
    assert values["tokenizer.ggml.token_type"] == [3, 1, 3, 3, 3, 3, 1, 1, 1]
    assert values["tokenizer.ggml.add_bos_token"] and values["tokenizer.ggml.add_eos_token"]
    assert values["tokenizer.ggml.normalizer.lowercase"] is True


def test_missing_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="model folder not found"):
        convert_bert_to_gguf(tmp_path / "nope", tmp_path / "x.gguf")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = make_tiny_model(tmp_path / "tiny")
    out = tmp_path / "cli.gguf"
    assert bert.main([str(model), str(out), "--outtype", "f32", "--name", "cli-model"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    values = kv(gguf.GGUFReader(out))
    assert values["general.file_type"] == 0 and values["general.name"] == "cli-model"
    assert bert.main([str(tmp_path / "nope"), str(out)]) == 1
    assert "error: model folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bert.main([str(model), str(out), "--outtype", "q4_0"])


# ---------------------------------------------------------------- the real all-MiniLM-L6-v2

@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    from localai.fetch import fetch_file
    return fetch_file("minilm_l6_v2")


@pytest.fixture(scope="module")
def minilm_st(minilm_dir: Path) -> dict[str, np.ndarray]:
    return read_safetensors(minilm_dir / "model.safetensors")


@pytest.fixture(scope="module", params=["f16", "f32"])
def minilm(request: pytest.FixtureRequest, minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    outtype = request.param
    out = convert_bert_to_gguf(minilm_dir, tmp_path_factory.mktemp("minilm") / f"minilm-{outtype}.gguf",
                               outtype=outtype)
    return outtype, out, gguf.GGUFReader(out)


# Every KV of model-formats.md B.1, with its GGUF type.
EXPECTED_KV = {
    "general.architecture": ("bert", [VT.STRING]),
    "general.type": ("model", [VT.STRING]),
    "general.name": ("all-MiniLM-L6-v2", [VT.STRING]),
    "general.quantization_version": (2, [VT.UINT32]),
    "bert.block_count": (6, [VT.UINT32]),
    "bert.context_length": (512, [VT.UINT32]),
    "bert.embedding_length": (384, [VT.UINT32]),
    "bert.feed_forward_length": (1536, [VT.UINT32]),
    "bert.attention.head_count": (12, [VT.UINT32]),
    "bert.attention.causal": (False, [VT.BOOL]),
    "bert.pooling_type": (1, [VT.UINT32]),
    "tokenizer.ggml.token_type_count": (2, [VT.UINT32]),
    "tokenizer.ggml.model": ("bert", [VT.STRING]),
    "tokenizer.ggml.pre": ("jina-v2-en", [VT.STRING]),
    "tokenizer.ggml.bos_token_id": (101, [VT.UINT32]),
    "tokenizer.ggml.eos_token_id": (102, [VT.UINT32]),
    "tokenizer.ggml.unknown_token_id": (100, [VT.UINT32]),
    "tokenizer.ggml.seperator_token_id": (102, [VT.UINT32]),
    "tokenizer.ggml.padding_token_id": (0, [VT.UINT32]),
    "tokenizer.ggml.mask_token_id": (103, [VT.UINT32]),
    "tokenizer.ggml.add_bos_token": (True, [VT.BOOL]),
    "tokenizer.ggml.add_eos_token": (True, [VT.BOOL]),
    "tokenizer.ggml.add_sep_token": (False, [VT.BOOL]),
    "tokenizer.ggml.normalizer.lowercase": (True, [VT.BOOL]),
}


def test_minilm_kv(minilm) -> None:
    outtype, _, reader = minilm
    values, types = kv(reader), kv_types(reader)
    for key, (value, vtype) in EXPECTED_KV.items():
        assert values[key] == value, key
        assert types[key] == vtype, key
    assert values["general.file_type"] == (1 if outtype == "f16" else 0)
    assert types["general.file_type"] == [VT.UINT32]
    assert values["bert.attention.layer_norm_epsilon"] == pytest.approx(1e-12, rel=1e-6)
    assert types["bert.attention.layer_norm_epsilon"] == [VT.FLOAT32]
    assert types["tokenizer.ggml.tokens"] == [VT.ARRAY, VT.STRING]
    assert types["tokenizer.ggml.token_type"] == [VT.ARRAY, VT.INT32]
    # nothing beyond the documented keys
    assert set(values) == set(EXPECTED_KV) | {"general.file_type", "bert.attention.layer_norm_epsilon",
                                              "tokenizer.ggml.tokens", "tokenizer.ggml.token_type"}


def test_minilm_vocab(minilm, minilm_dir: Path) -> None:
    _, _, reader = minilm
    values = kv(reader)
    tokens, types = values["tokenizer.ggml.tokens"], values["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == 30522
    control = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
    assert {i for i, t in enumerate(types) if t == 3} == set(control)
    assert set(types) == {1, 3}
    for i, tok in control.items():
        assert tokens[i] == tok
    assert tokens[1] == "\u2581[unused0]"
    # vocab.txt is id order; check the transform on every token
    raw = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")[:30522]
    for i, (src, dst) in enumerate(zip(raw, tokens)):
        expected = src if i in control else src[2:] if src.startswith("##") else "\u2581" + src
        assert dst == expected, i
    for tok, want in {"the": "\u2581the", "##ing": "ing", "embedding": None}.items():
        if tok in raw:
            assert tokens[raw.index(tok)] == (want or "\u2581" + tok)


def test_minilm_tensors(minilm, minilm_st: dict[str, np.ndarray]) -> None:
    outtype, _, reader = minilm
    assert len(reader.tensors) == 101
    by_name = {t.name: t for t in reader.tensors}
    assert len(by_name) == 101
    expected_names = {"token_embd.weight", "position_embd.weight", "token_types.weight",
                      "token_embd_norm.weight", "token_embd_norm.bias"}
    for i in range(6):
        for base in ("attn_q", "attn_k", "attn_v", "attn_output", "attn_output_norm", "ffn_up", "ffn_down",
                     "layer_output_norm"):
            expected_names |= {f"blk.{i}.{base}.weight", f"blk.{i}.{base}.bias"}
    assert set(by_name) == expected_names

    f16_names = set()
    for hf_name, arr in minilm_st.items():
        gname = map_tensor_name(hf_name)
        if gname is None:
            assert hf_name in ("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias")
            continue
        t = by_name[gname]
        # GGUF ne is the reversed numpy shape: ne[0] is the innermost (input) dimension
        assert [int(d) for d in t.shape] == list(arr.shape[::-1]), gname
        want_type = F16 if (outtype == "f16" and arr.ndim == 2 and gname not in
                            ("position_embd.weight", "token_types.weight")) else F32
        assert t.tensor_type == want_type, gname
        if want_type == F16:
            f16_names.add(gname)
        want = arr.astype(np.float16 if want_type == F16 else np.float32)
        got = np.asarray(t.data).reshape(arr.shape)
        assert got.dtype == want.dtype
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), gname  # bit-exact
    assert len(f16_names) == (1 + 6 * 6 if outtype == "f16" else 0)
    assert by_name["token_embd.weight"].shape.tolist() == [384, 30522]


def test_minilm_file_and_alignment(minilm) -> None:
    outtype, path, reader = minilm
    assert path.name == f"minilm-{outtype}.gguf"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    with open(path, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert int(reader.fields["GGUF.version"].contents()) == 3
    for t in reader.tensors:
        assert t.data_offset % 32 == 0, t.name
    # f16: 1 + 36 matrices halved; sizes from the doc's facts (≈46 MB vs ≈91 MB)
    size = os.path.getsize(path)
    assert (45e6 < size < 47e6) if outtype == "f16" else (90e6 < size < 92e6)
