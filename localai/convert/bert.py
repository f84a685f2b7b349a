"""Convert a sentence-transformers BERT model folder to a GGUF file llama.cpp loads as arch ``bert``.

The default embedding model ships as safetensors + HF tokenizer files; llama.cpp only
loads GGUF. Reading safetensors takes a few lines of numpy, and GGUF is written with the
PyPI ``gguf`` package (the writer maintained alongside llama.cpp), so no torch or
transformers install is needed. Format facts (tensor names, dtypes, KV keys, vocab
transform) are in ``model-formats.md`` section B.1.

    python -m localai.convert.bert MODEL_DIR OUT.gguf [--outtype f16|f32] [--name NAME]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from localai.errors import ConversionError
from localai.files import atomic_path, progress

__all__ = [
    "ConversionError",
    "OUTTYPES",
    "build_metadata",
    "convert_bert_to_gguf",
    "gguf_dtype",
    "gguf_tensors",
    "load_tokenizer",
    "main",
    "map_tensor_name",
    "pooling_type",
    "read_hparams",
    "read_safetensors",
    "vocab_to_gguf",
]


OUTTYPES = ("f16", "f32")
_FILE_TYPE = {"f32": 0, "f16": 1}  # general.file_type: LLAMA_FTYPE_ALL_F32 / MOSTLY_F16

# gguf.TokenType / gguf.PoolingType values, repeated here so the pure helpers do not
# need the gguf package (it is only imported when a file is actually written).
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5
POOLING_MEAN, POOLING_CLS, POOLING_LAST = 1, 2, 3

# SentencePiece-style word-start marker: llama.cpp's WPM tokenizer looks up whole words
# as "\u2581word" and continuation pieces without the "##" prefix.
PHANTOM_SPACE = "\u2581"

# ---------------------------------------------------------------- safetensors

# safetensors dtype name -> little-endian numpy dtype. BF16 has no numpy dtype: it is read
# as u16 and widened to f32 (exact: bf16 is the top half of an f32).
_ST_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100 << 20  # the safetensors spec caps the JSON header at 100 MB


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a ``.safetensors`` file as numpy arrays, in header order.

    Layout: u64 little-endian header length, a JSON header ``{name: {dtype, shape,
    data_offsets: [start, end]}}`` (plus optional ``__metadata__``), then raw data;
    offsets are relative to the end of the header. Arrays are read-only views of a
    memory map (no copy), except BF16 tensors, which are returned widened to float32.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConversionError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size < 8:
        raise ConversionError(f"{path.name}: not a safetensors file ({size} bytes)")
    with open(path, "rb") as fh:
        header_len = int.from_bytes(fh.read(8), "little")
        if header_len == 0 or header_len > min(size - 8, _MAX_HEADER):
            raise ConversionError(
                f"{path.name}: bad safetensors header length {header_len} (file is {size} bytes)")
        raw_header = fh.read(header_len)
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path.name}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ConversionError(f"{path.name}: safetensors header is not a JSON object")

    base = 8 + header_len
    data_len = size - base
    mm = np.memmap(path, dtype=np.uint8, mode="r") if data_len > 0 else np.zeros(0, np.uint8)
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape, dtype, start, end = _check_entry(path.name, name, info, data_len)
        arr = mm[base + start: base + end].view(dtype).reshape(shape)
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr
    return out


def _check_entry(fname: str, name: str, info: Any, data_len: int) -> tuple[tuple[int, ...], np.dtype, int, int]:
    """Validate one header entry; a bad entry must fail here, not as a numpy error later."""
    where = f"{fname}: tensor {name!r}"
    if not isinstance(info, dict):
        raise ConversionError(f"{where}: header entry is not an object")
    dtype = _ST_DTYPES.get(info.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        raise ConversionError(f"{where}: unsupported dtype {info.get('dtype')!r}")
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise ConversionError(f"{where}: bad shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
        raise ConversionError(f"{where}: bad data_offsets {offsets!r}")
    start, end = offsets
    if not 0 <= start <= end <= data_len:
        raise ConversionError(f"{where}: data_offsets {offsets} outside the {data_len}-byte data section")
    if end - start != math.prod(shape) * dtype.itemsize:
        raise ConversionError(f"{where}: {end - start} bytes do not match shape {shape} of {info['dtype']}")
    return tuple(shape), dtype, start, end


# ---------------------------------------------------------------- tensor names and types

# HF tensors that llama.cpp's bert graph does not use.
_DROPPED = re.compile(r"^(embeddings\.position_ids|pooler\..*|cls\..*)$")
_GLOBAL_NAMES = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_LAYER_NAMES = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
_GLOBAL_TENSORS = tuple(_GLOBAL_NAMES.values())
_LAYER_TENSORS = tuple(f"{base}.{kind}" for base in _LAYER_NAMES.values() for kind in ("weight", "bias"))


def map_tensor_name(hf_name: str) -> str | None:
    """The GGUF name for a HF BERT tensor, or None for a tensor llama.cpp does not use.

    Raises ConversionError for a name this converter does not know, rather than dropping
    weights silently.
    """
    name = hf_name.removeprefix("bert.")  # BertFor* checkpoints nest the encoder under "bert."
    # Checkpoints converted from TensorFlow name LayerNorm parameters gamma/beta.
    name = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", name))
    if _DROPPED.match(name):
        return None
    if name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[name]
    m = _LAYER.match(name)
    if m and m.group(2) in _LAYER_NAMES:
        return f"blk.{int(m.group(1))}.{_LAYER_NAMES[m.group(2)]}.{m.group(3)}"
    raise ConversionError(f"unknown tensor name {hf_name!r}: not part of a BERT model")


def gguf_dtype(gguf_name: str, ndim: int, outtype: str = "f16") -> np.dtype:
    """Storage dtype of a tensor: f16 only for 2-D matmul weights in an f16 file.

    Norms and biases stay f32 (tiny, and ggml adds/normalises in f32); position and
    token-type tables stay f32 because llama.cpp reads rows of them with ggml_get_rows
    into f32 sums, matching llama.cpp's own converter.
    """
    if outtype not in OUTTYPES:
        raise ConversionError(f"unsupported output type {outtype!r} (choose from {', '.join(OUTTYPES)})")
    if (outtype == "f16" and ndim == 2 and gguf_name.endswith(".weight")
            and not gguf_name.endswith("_norm.weight")
            and gguf_name not in ("position_embd.weight", "token_types.weight")):
        return np.dtype(np.float16)
    return np.dtype(np.float32)


# ---------------------------------------------------------------- tokenizer

def vocab_to_gguf(tokens: Sequence[str | None], control_ids: Collection[int] = (),
                  user_defined_ids: Collection[int] = ()) -> tuple[list[str], list[int]]:
    """WordPiece vocab (index = id) -> (GGUF token strings, GGUF token types).

    Control tokens ([CLS], [SEP] ...) are kept verbatim; a "##piece" continuation becomes
    "piece"; every other token gets the phantom-space prefix "\\u2581" that marks a word
    start for llama.cpp's WPM tokenizer. A hole in the id range (None) becomes an UNUSED
    "[PAD<id>]" placeholder so ids stay aligned with the embedding rows.
    """
    control, user = set(control_ids), set(user_defined_ids)
    out_tokens: list[str] = []
    out_types: list[int] = []
    for i, tok in enumerate(tokens):
        if tok is None:
            tok, ttype = f"[PAD{i}]", TOKEN_UNUSED
        elif i in control:
            out_tokens.append(tok)
            out_types.append(TOKEN_CONTROL)
            continue
        else:
            ttype = TOKEN_USER_DEFINED if i in user else TOKEN_NORMAL
        out_tokens.append(tok[2:] if tok.startswith("##") else PHANTOM_SPACE + tok)
        out_types.append(ttype)
    return out_tokens, out_types


@dataclass
class Tokenizer:
    """What the GGUF needs from the HF tokenizer files."""

    tokens: list[str | None]  # index = id
    control_ids: set[int]
    user_defined_ids: set[int]
    special: dict[str, int]  # bos/eos/unk/sep/pad/mask -> id
    add_bos: bool
    add_eos: bool
    add_sep: bool
    lowercase: bool
    strip_accents: bool | None  # None: llama.cpp follows `lowercase`, as HF does


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ConversionError(f"missing {path.name} in {path.parent}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"cannot read {path}: {exc}") from None


def _token_name(value: Any) -> str | None:
    # tokenizer_config.json stores special tokens as strings or as AddedToken objects.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def load_tokenizer(model_dir: str | os.PathLike) -> Tokenizer:
    """Vocab, special ids and flags from tokenizer.json (or vocab.txt when it is absent)."""
    model_dir = Path(model_dir)
    config: dict[str, Any] = {}
    for fname in ("special_tokens_map.json", "tokenizer_config.json"):  # later file wins
        if (model_dir / fname).is_file():
            data = _read_json(model_dir / fname)
            if isinstance(data, dict):
                config.update(data)

    ids: dict[str, int]
    added: list[dict[str, Any]] = []
    post: Any = None
    tj_path = model_dir / "tokenizer.json"
    if tj_path.is_file():
        tj = _read_json(tj_path)
        model = tj.get("model") if isinstance(tj, dict) else None
        if not isinstance(model, dict) or model.get("type") != "WordPiece" or not isinstance(model.get("vocab"), dict):
            raise ConversionError(f"{tj_path}: not a WordPiece (BERT) tokenizer")
        ids = dict(model["vocab"])
        added = [t for t in tj.get("added_tokens") or []
                 if isinstance(t, dict) and isinstance(t.get("content"), str) and type(t.get("id")) is int]
        for t in added:
            ids[t["content"]] = t["id"]
        post = tj.get("post_processor")
        norm = tj.get("normalizer") or {}
        norms = norm.get("normalizers", [norm]) if norm.get("type") == "Sequence" else [norm]
        lowercase, strip_accents = False, None
        for n in norms:
            if n.get("type") == "BertNormalizer":
                lowercase = bool(n.get("lowercase", True))
                strip_accents = n.get("strip_accents")
            elif n.get("type") == "Lowercase":
                lowercase = True
            elif n.get("type") == "StripAccents":
                strip_accents = True
    elif (model_dir / "vocab.txt").is_file():
        # Older BERT folders have only vocab.txt: one token per line, line number = id.
        # Split on "\n" only: tokens may contain other Unicode line separators.
        text = (model_dir / "vocab.txt").read_text(encoding="utf-8")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        ids = {tok: i for i, tok in enumerate(lines)}
        post = {"type": "BertProcessing"}  # what BertTokenizer always does
        lowercase = bool(config.get("do_lower_case", True))
        strip_accents = config.get("strip_accents")
    else:
        raise ConversionError(f"missing tokenizer.json (or vocab.txt) in {model_dir}")

    if not ids or any(type(i) is not int or i < 0 for i in ids.values()):
        raise ConversionError(f"{model_dir}: bad token ids in the vocabulary")
    tokens: list[str | None] = [None] * (max(ids.values()) + 1)
    for tok, i in ids.items():
        tokens[i] = tok

    names = {k: _token_name(config.get(f"{k}_token")) for k in ("bos", "eos", "unk", "sep", "pad", "cls", "mask")}
    defaults = {"unk": "[UNK]", "sep": "[SEP]", "pad": "[PAD]", "cls": "[CLS]", "mask": "[MASK]"}
    for k, v in defaults.items():
        names[k] = names[k] or v
    # BERT has no BOS/EOS of its own; llama.cpp's WPM path uses [CLS] as BOS and [SEP] as EOS.
    names["bos"] = names["bos"] or names["cls"]
    names["eos"] = names["eos"] or names["sep"]
    special: dict[str, int] = {}
    for k in ("bos", "eos", "unk", "sep", "pad", "mask"):
        if names[k] in ids:
            special[k] = ids[names[k]]
        elif k in ("bos", "eos", "unk", "sep"):  # llama.cpp's WPM tokenizer needs these
            raise ConversionError(f"{model_dir}: special token {names[k]!r} ({k}) is not in the vocabulary")

    add_bos, add_eos, add_sep = _special_flags(post, {names["bos"], names["cls"]}, {names["eos"], names["sep"]})
    control = {t["id"] for t in added if t.get("special")}
    if not added:  # vocab.txt: the named specials are the control tokens
        control = {ids[n] for n in set(names.values()) if n in ids}
    user = {t["id"] for t in added if not t.get("special")}
    return Tokenizer(tokens, control, user, special, add_bos, add_eos, add_sep,
                     lowercase, strip_accents if isinstance(strip_accents, bool) else None)


def _special_flags(post: Any, bos_names: set[str], eos_names: set[str]) -> tuple[bool, bool, bool]:
    """(add_bos, add_eos, add_sep) from a tokenizer.json post_processor.

    add_sep tells llama.cpp (rerank pairs) to put a separator between two sequences on
    top of the EOS already closing the first; BERT's "[CLS] A [SEP] B [SEP]" needs no
    extra one, RoBERTa's "<s> A </s> </s> B </s>" does.
    """
    if not isinstance(post, dict):
        return False, False, False
    kind = post.get("type")
    if kind == "Sequence":
        for p in post.get("processors") or []:
            if isinstance(p, dict) and p.get("type") in ("TemplateProcessing", "BertProcessing", "RobertaProcessing"):
                return _special_flags(p, bos_names, eos_names)
        return False, False, False
    if kind == "BertProcessing":
        return True, True, False
    if kind == "RobertaProcessing":
        return True, True, True
    if kind != "TemplateProcessing":
        return False, False, False

    def special_id(item: Any) -> str | None:
        return item.get("SpecialToken", {}).get("id") if isinstance(item, dict) else None

    single, pair = post.get("single") or [], post.get("pair") or []
    add_bos = bool(single) and special_id(single[0]) in bos_names
    add_eos = len(single) > 1 and special_id(single[-1]) in eos_names
    seq = [i for i, item in enumerate(pair) if isinstance(item, dict) and "Sequence" in item]
    add_sep = False
    if len(seq) == 2:
        middle = [special_id(item) for item in pair[seq[0] + 1: seq[1]]]
        n_sep = sum(1 for m in middle if m in eos_names)
        add_sep = n_sep == 2 or (n_sep == 1 and not add_eos)
    return add_bos, add_eos, add_sep


def pooling_type(model_dir: str | os.PathLike) -> int:
    """llama.cpp pooling type from the sentence-transformers Pooling module config."""
    model_dir = Path(model_dir)
    folder = "1_Pooling"
    if (model_dir / "modules.json").is_file():  # the Pooling module may live elsewhere
        modules = _read_json(model_dir / "modules.json")
        for mod in modules if isinstance(modules, list) else []:
            if isinstance(mod, dict) and str(mod.get("type", "")).endswith("Pooling") and mod.get("path"):
                folder = mod["path"]
                break
    cfg = _read_json(model_dir / folder / "config.json")
    modes = {k.removeprefix("pooling_mode_"): v for k, v in cfg.items()
             if k.startswith("pooling_mode_") and v is True}
    supported = {"mean_tokens": POOLING_MEAN, "cls_token": POOLING_CLS, "lasttoken": POOLING_LAST}
    if len(modes) != 1 or next(iter(modes)) not in supported:
        raise ConversionError(
            f"{model_dir / folder / 'config.json'}: pooling {sorted(modes) or 'none'} is not supported by "
            f"llama.cpp (exactly one of mean_tokens, cls_token, lasttoken)")
    return supported[next(iter(modes))]


# ---------------------------------------------------------------- hyperparameters and metadata

@dataclass(frozen=True)
class HParams:
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_ctx: int
    n_vocab: int
    n_token_types: int
    norm_eps: float


def read_hparams(model_dir: str | os.PathLike) -> HParams:
    config = _read_json(Path(model_dir) / "config.json")
    if not isinstance(config, dict):
        raise ConversionError(f"{model_dir}/config.json is not a JSON object")
    archs = config.get("architectures") or []
    if config.get("model_type") != "bert" or not all(str(a).startswith("Bert") for a in archs):
        raise ConversionError(
            f"not a BERT model: model_type={config.get('model_type')!r}, architectures={archs!r}")
    # llama.cpp's bert graph has learned absolute positions and exact-erf GELU only.
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"unsupported position_embedding_type {config['position_embedding_type']!r}")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ConversionError(f"unsupported hidden_act {config['hidden_act']!r} (llama.cpp's bert uses gelu)")
    try:
        hp = HParams(
            n_layer=int(config["num_hidden_layers"]),
            n_embd=int(config["hidden_size"]),
            n_ff=int(config["intermediate_size"]),
            n_head=int(config["num_attention_heads"]),
            n_ctx=int(config["max_position_embeddings"]),
            n_vocab=int(config["vocab_size"]),
            n_token_types=int(config.get("type_vocab_size", 2)),
            norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        )
    except KeyError as exc:
        raise ConversionError(f"{model_dir}/config.json lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ConversionError(f"{model_dir}/config.json: bad value ({exc})") from None
    if hp.n_head <= 0 or hp.n_embd % hp.n_head:
        raise ConversionError(f"hidden_size {hp.n_embd} is not a multiple of num_attention_heads {hp.n_head}")
    return hp


def build_metadata(hp: HParams, tok: Tokenizer, *, name: str, pooling: int,
                   outtype: str) -> list[tuple[str, Any, str]]:
    """GGUF KV pairs as (key, value, type), type one of u32/f32/bool/str/[str]/[i32].

    general.architecture is left out: GGUFWriter writes it itself.
    """
    tokens, types = vocab_to_gguf(tok.tokens, tok.control_ids, tok.user_defined_ids)
    kv: list[tuple[str, Any, str]] = [
        ("general.type", "model", "str"),
        ("general.name", name, "str"),
        ("general.file_type", _FILE_TYPE[outtype], "u32"),
        ("general.quantization_version", 2, "u32"),
        ("bert.block_count", hp.n_layer, "u32"),
        ("bert.context_length", hp.n_ctx, "u32"),
        ("bert.embedding_length", hp.n_embd, "u32"),
        ("bert.feed_forward_length", hp.n_ff, "u32"),
        ("bert.attention.head_count", hp.n_head, "u32"),
        ("bert.attention.layer_norm_epsilon", hp.norm_eps, "f32"),
        ("bert.attention.causal", False, "bool"),
        ("bert.pooling_type", pooling, "u32"),
        ("tokenizer.ggml.token_type_count", hp.n_token_types, "u32"),
        ("tokenizer.ggml.model", "bert", "str"),  # selects llama.cpp's WPM tokenizer
        ("tokenizer.ggml.pre", "jina-v2-en", "str"),  # unused by WPM; matches llama.cpp's converter
        ("tokenizer.ggml.tokens", tokens, "[str]"),
        ("tokenizer.ggml.token_type", types, "[i32]"),
    ]
    key_of = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
              "sep": "seperator_token_id",  # sic: llama.cpp's spelling
              "pad": "padding_token_id", "mask": "mask_token_id"}
    for k, key in key_of.items():
        if k in tok.special:
            kv.append((f"tokenizer.ggml.{key}", tok.special[k], "u32"))
    kv += [
        ("tokenizer.ggml.add_bos_token", tok.add_bos, "bool"),
        ("tokenizer.ggml.add_eos_token", tok.add_eos, "bool"),
        ("tokenizer.ggml.add_sep_token", tok.add_sep, "bool"),
        ("tokenizer.ggml.normalizer.lowercase", tok.lowercase, "bool"),
    ]
    if tok.strip_accents is not None:
        kv.append(("tokenizer.ggml.normalizer.strip_accents", tok.strip_accents, "bool"))
    return kv


# ---------------------------------------------------------------- conversion

def _expected_shapes(hp: HParams) -> dict[str, tuple[int, ...]]:
    e, f = hp.n_embd, hp.n_ff
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (hp.n_vocab, e),
        "position_embd.weight": (hp.n_ctx, e),
        "token_types.weight": (hp.n_token_types, e),
        "token_embd_norm.weight": (e,),
        "token_embd_norm.bias": (e,),
    }
    per_layer = {"attn_q": (e, e), "attn_k": (e, e), "attn_v": (e, e), "attn_output": (e, e),
                 "attn_output_norm": None, "ffn_up": (f, e), "ffn_down": (e, f), "layer_output_norm": None}
    for i in range(hp.n_layer):
        for base, wshape in per_layer.items():
            out_dim = wshape[0] if wshape else e
            shapes[f"blk.{i}.{base}.weight"] = wshape or (e,)
            shapes[f"blk.{i}.{base}.bias"] = (out_dim,)
    return shapes


def _sort_key(name: str) -> tuple[int, int, str]:
    # Globals first, then blocks in numeric order (plain sorting would put blk.10 before blk.2).
    m = re.match(r"blk\.(\d+)\.", name)
    return (1, int(m.group(1)), name) if m else (0, 0, name)


def gguf_tensors(st: dict[str, np.ndarray], hp: HParams, outtype: str) -> Iterable[tuple[str, np.ndarray]]:
    """Map, check and cast the safetensors arrays; yields (gguf name, array to write)."""
    mapped: dict[str, np.ndarray] = {}
    for hf_name, arr in st.items():
        gname = map_tensor_name(hf_name)
        if gname is None:
            continue
        if gname in mapped:
            raise ConversionError(f"two tensors map to {gname!r} (one is {hf_name!r})")
        mapped[gname] = arr
    expected = _expected_shapes(hp)
    missing = sorted(set(expected) - set(mapped), key=_sort_key)
    extra = sorted(set(mapped) - set(expected), key=_sort_key)
    if missing or extra:
        raise ConversionError(
            f"tensors do not match config.json ({hp.n_layer} layers): "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {extra[:5]}")
    for gname in sorted(mapped, key=_sort_key):
        arr = mapped[gname]
        if arr.shape != expected[gname]:
            raise ConversionError(f"{gname}: shape {arr.shape} does not match config.json {expected[gname]}")
        if arr.dtype.kind != "f":
            raise ConversionError(f"{gname}: dtype {arr.dtype} is not floating point")
        dtype = gguf_dtype(gname, arr.ndim, outtype)
        with np.errstate(over="ignore"):  # overflow is reported below, with advice
            out = np.ascontiguousarray(arr, dtype=dtype)
        if dtype == np.float16 and not np.isfinite(out).all() and np.isfinite(arr).all():
            raise ConversionError(f"{gname}: values overflow float16; convert with --outtype f32")
        yield gname, out


def convert_bert_to_gguf(model_dir: str | os.PathLike, out_path: str | os.PathLike, *,
                         outtype: str = "f16", name: str | None = None) -> Path:
    """Convert a sentence-transformers BERT folder to a GGUF file (arch ``bert``).

    The file is written beside ``out_path`` under a temporary name, flushed to disk and
    renamed over ``out_path``, so a crash never leaves a half-written model behind.
    Returns ``out_path`` as a Path.
    """
    model_dir, out = Path(model_dir), Path(out_path)
    if outtype not in OUTTYPES:
        raise ConversionError(f"unsupported output type {outtype!r} (choose from {', '.join(OUTTYPES)})")
    if not model_dir.is_dir():
        raise ConversionError(f"model folder not found: {model_dir}")
    if out.is_dir():
        raise ConversionError(f"output path is a folder: {out}")
    # Everything is read and checked before the output file is created.
    hp = read_hparams(model_dir)
    tok = load_tokenizer(model_dir)
    if len(tok.tokens) > hp.n_vocab:
        raise ConversionError(f"tokenizer has {len(tok.tokens)} ids but config.json vocab_size is {hp.n_vocab}")
    tok.tokens += [None] * (hp.n_vocab - len(tok.tokens))  # llama.cpp needs one token per embedding row
    metadata = build_metadata(hp, tok, name=name or model_dir.resolve().name,
                              pooling=pooling_type(model_dir), outtype=outtype)
    st_path = model_dir / "model.safetensors"
    if not st_path.is_file():
        raise ConversionError(f"missing model.safetensors in {model_dir}")
    st = read_safetensors(st_path)

    import gguf  # deferred: only needed to write, and it imports a fair amount

    vtypes = {"u32": gguf.GGUFValueType.UINT32, "f32": gguf.GGUFValueType.FLOAT32,
              "bool": gguf.GGUFValueType.BOOL, "str": gguf.GGUFValueType.STRING,
              "[str]": gguf.GGUFValueType.ARRAY, "[i32]": gguf.GGUFValueType.ARRAY}
    subtypes = {"[str]": gguf.GGUFValueType.STRING, "[i32]": gguf.GGUFValueType.INT32}

    with atomic_path(out) as tmp:
        writer = gguf.GGUFWriter(tmp, arch="bert")
        try:
            for key, value, vtype in metadata:
                writer.add_key_value(key, value, vtypes[vtype], sub_type=subtypes.get(vtype))
            n_tensors = len(_expected_shapes(hp))
            for gname, arr in progress(gguf_tensors(st, hp, outtype), total=n_tensors,
                                       desc=f"convert {model_dir.name}", unit="tensor"):
                writer.add_tensor(gname, arr)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
        with open(tmp, "rb+") as fh:  # the rename must not become visible before the data
            os.fsync(fh.fileno())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localai.convert.bert",
        description="Convert a sentence-transformers BERT folder (model.safetensors, config.json, "
                    "tokenizer.json, 1_Pooling/) to a GGUF file for llama.cpp (arch bert).")
    parser.add_argument("model_dir", help="folder holding model.safetensors and config.json")
    parser.add_argument("out", help="output .gguf path (replaced atomically)")
    parser.add_argument("--outtype", choices=OUTTYPES, default="f16",
                        help="f16: 2-D weights in float16 (default); f32: everything float32")
    parser.add_argument("--name", help="general.name (default: the model folder's name)")
    args = parser.parse_args(argv)
    try:
        path = convert_bert_to_gguf(args.model_dir, args.out, outtype=args.outtype, name=args.name)
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
