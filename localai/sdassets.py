"""A tiny random-weight Stable Diffusion asset folder for tests and smoke runs.

    python -m localai.sdassets OUT_DIR [--seed N]

Writes the 15 files of the real asset set (the folder EdVince's Stable-Diffusion-NCNN and
LocalAI's ``stablediffusion`` backend read), with the same file names, input/output blob names
and .param conventions, but networks of a few thousand weights (about 1.5 MB, most of it the
49,408-entry token embedding and vocab.txt) so that the whole pipeline runs in well under a
second per image:

- vocab.txt: the real CLIP vocabulary, rebuilt from OpenAI's ``bpe_simple_vocab_16e6.txt.gz``
  (pinned in sources.toml as ``clip_bpe_vocab``);
- log_sigmas.bin: SD 1.x's scaled-linear schedule, 1000 float32;
- the text encoder, UNet, VAE decoder and encoder graphs mirror the real ones where the
  pipeline depends on them: blob names, the attention weighting tail of the text encoder,
  the 16 transformer blocks (2 Reshapes each, at latent scales 1,1,1/2,1/2,1/4,1/4,1/8,
  1/4 x3, 1/2 x3, 1 x3) whose numbers the size rewrite changes, and the decoder's 3+1 Reshapes.
  The 256/512 ``-opt`` params and the base params differ only in those numbers (and shape
  hints) and share one .bin, as the real ones do.

``TinyWeights`` returns the exact (fp16-rounded) weights written, so tests can compute the
networks in numpy and compare.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from localai.convert.bpe import bytes_to_unicode
from localai.files import atomic_write

__all__ = ["ASSET_FILES", "TinyWeights", "clip_vocab", "log_sigmas", "write_tiny_assets", "main"]

ASSET_FILES = (
    "vocab.txt",
    "log_sigmas.bin",
    "FrozenCLIPEmbedder-fp16.param",
    "FrozenCLIPEmbedder-fp16.bin",
    "UNetModel-256-256-MHA-fp16-opt.param",
    "UNetModel-512-512-MHA-fp16-opt.param",
    "UNetModel-base-MHA-fp16.param",
    "UNetModel-MHA-fp16.bin",
    "AutoencoderKL-256-256-fp16-opt.param",
    "AutoencoderKL-512-512-fp16-opt.param",
    "AutoencoderKL-base-fp16.param",
    "AutoencoderKL-fp16.bin",
    "AutoencoderKL-encoder-512-512-fp16.param",
    "AutoencoderKL-encoder-512-512-fp16.bin",
    "tmp-AutoencoderKL-encoder-256-256-fp16.param",
)

CONTEXT_DIM = 768
VOCAB_SIZE = 49408
TOKENS = 77
CLIP_DIM = 8       # tiny embedding width before the projection to 768
UNET_CH = 8
UNET_HEADS = 2
DECODER_CH = 16
# latent-scale divisor of each of the 16 transformer blocks, as in SD 1.x's UNet
BLOCK_DIVISORS = (1, 1, 2, 2, 4, 4, 8, 4, 4, 4, 2, 2, 2, 1, 1, 1)
FP16_TAG = 0x01306B47


# ---- CLIP vocabulary and noise schedule -------------------------------------------------------

def _clip_byte_symbols() -> list[str]:
    """The byte -> character table in CLIP's order: the printable bytes first, then the remapped ones."""
    table = bytes_to_unicode()
    printable = [b for b in range(256) if table[b] == chr(b)]
    return [table[b] for b in printable] + [table[b] for b in range(256) if table[b] != chr(b)]


def clip_merges(bpe_gz: Path) -> list[tuple[str, str]]:
    lines = gzip.decompress(Path(bpe_gz).read_bytes()).decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]


def clip_vocab(bpe_gz: Path) -> list[str]:
    """CLIP's 49,408 tokens in id order (as CLIP's SimpleTokenizer builds its encoder)."""
    symbols = _clip_byte_symbols()
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab += ["".join(pair) for pair in clip_merges(bpe_gz)]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"{bpe_gz}: built {len(vocab)} tokens, expected {VOCAB_SIZE}")
    return vocab


def log_sigmas() -> np.ndarray:
    """log(sqrt((1 - acp) / acp)) of SD 1.x's scaled-linear beta schedule, float32[1000]."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    # float64 betas and cumulative product, then float32 from there on, as CompVis' LDM code
    # (and k-diffusion over it) computes them
    alphas_cumprod = np.cumprod(1.0 - betas).astype(np.float32)
    return np.log(np.sqrt((np.float32(1.0) - alphas_cumprod) / alphas_cumprod)).astype(np.float32)


# ---- ncnn .param / .bin writers ---------------------------------------------------------------

class ParamWriter:
    """Layer lines of an ncnn .param file; blob names are counted as they appear."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.blobs: dict[str, None] = {}

    def layer(self, kind: str, name: str, inputs: list[str], outputs: list[str], **params) -> None:
        """One layer line; params are spelled ``_0=...`` for id 0 and ``_n23330=...`` for id -23330."""
        for blob in (*inputs, *outputs):
            self.blobs.setdefault(blob, None)
        fields = [kind, name, str(len(inputs)), str(len(outputs)), *inputs, *outputs]
        for key, value in params.items():
            key = key.lstrip("_").replace("n", "-", 1) if key.startswith("_n") else key.lstrip("_")
            if isinstance(value, float):
                value = f"{value:e}"
            fields.append(f"{key}={value}")
        self.lines.append(" ".join(fields))

    def text(self) -> str:
        return "7767517\n" + f"{len(self.lines)} {len(self.blobs)}\n" + "\n".join(self.lines) + "\n"


class BinWriter:
    """Weights in layer order: big tensors as tagged fp16 ("type 0"), the rest raw fp32 ("type 1")."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.parts: list[bytes] = []

    def fp16(self, shape: tuple[int, ...], scale: float, mean: float = 0.0) -> np.ndarray:
        values = (self.rng.standard_normal(shape) * scale + mean).astype(np.float16)
        raw = values.tobytes()
        self.parts.append(struct.pack("<I", FP16_TAG) + raw + b"\0" * (-len(raw) % 4))
        return values.astype(np.float32)

    def fp32(self, shape: tuple[int, ...], scale: float, mean: float = 0.0) -> np.ndarray:
        values = (self.rng.standard_normal(shape) * scale + mean).astype(np.float32)
        self.parts.append(values.astype("<f4").tobytes())
        return values

    def data(self) -> bytes:
        return b"".join(self.parts)


def _hint(*shape: int) -> str:
    """ncnnoptimize's output shape hint (-23330) for one 3-D output blob."""
    return ",".join(["4", "3", *map(str, shape)])


# ---- the networks -------------------------------------------------------------------------------

@dataclass
class TinyWeights:
    clip: dict[str, np.ndarray] = field(default_factory=dict)
    unet: dict[str, np.ndarray] = field(default_factory=dict)
    decoder: dict[str, np.ndarray] = field(default_factory=dict)
    encoder: dict[str, np.ndarray] = field(default_factory=dict)


def _clip(rng: np.random.Generator) -> tuple[str, bytes, dict]:
    p, b, w = ParamWriter(), BinWriter(rng), {}
    p.layer("Input", "in0", [], ["token"])
    p.layer("Input", "in1", [], ["multiplier"])
    p.layer("Input", "in2", [], ["cond"])
    p.layer("MemoryData", "position", [], ["position"], _0=CLIP_DIM, _1=TOKENS)
    w["position"] = b.fp32((TOKENS, CLIP_DIM), 0.5)
    p.layer("Embed", "embed", ["token"], ["embedded"], _0=CLIP_DIM, _1=VOCAB_SIZE, _2=0, _3=VOCAB_SIZE * CLIP_DIM)
    w["embed"] = b.fp16((VOCAB_SIZE, CLIP_DIM), 1.0)
    p.layer("BinaryOp", "add_position", ["embedded", "position"], ["h0"], _0=0)
    p.layer("LayerNorm", "ln_0", ["h0"], ["h1"], _0=CLIP_DIM, _1=1e-5, _2=1)
    w["ln_0.gamma"] = b.fp32((CLIP_DIM,), 0.1, 1.0)
    w["ln_0.beta"] = b.fp32((CLIP_DIM,), 0.1)
    p.layer("InnerProduct", "projection", ["h1"], ["h2"], _0=CONTEXT_DIM, _1=1, _2=CLIP_DIM * CONTEXT_DIM)
    w["projection.weight"] = b.fp16((CONTEXT_DIM, CLIP_DIM), CLIP_DIM ** -0.5)
    w["projection.bias"] = b.fp32((CONTEXT_DIM,), 0.1)
    p.layer("LayerNorm", "ln_final", ["h2"], ["out0"], _0=CONTEXT_DIM, _1=1e-5, _2=1)
    w["ln_final.gamma"] = b.fp32((CONTEXT_DIM,), 0.1, 1.0)
    # a mean well away from 0: the weighting tail divides by the mean
    w["ln_final.beta"] = b.fp32((CONTEXT_DIM,), 0.1, 0.5)
    # The reference's attention-weighting tail: z' = z * multiplier; z' *= mean(z) / mean(z').
    p.layer("Split", "cal_splitncnn_0", ["out0"], ["cal_1", "cal_2"])
    p.layer("BinaryOp", "cal_mul_0", ["cal_1", "multiplier"], ["cal_6"], _0=2)
    p.layer("Split", "cal_splitncnn_1", ["cal_6"], ["cal_7", "cal_8"])
    p.layer("Reduction", "cal_mean_1", ["cal_2"], ["cal_9"], _0=3, _1=1, _4=0)
    p.layer("Reduction", "cal_mean_0", ["cal_8"], ["cal_10"], _0=3, _1=1, _4=0)
    p.layer("BinaryOp", "cal_div_1", ["cal_9", "cal_10"], ["cal_11"], _0=3)
    p.layer("BinaryOp", "cal_mul_2", ["cal_7", "cal_11"], ["cal_12"], _0=2)
    p.layer("Concat", "cal_cat_0", ["cond", "cal_12"], ["conds"], _0=0)
    return p.text(), b.data(), w


def _conv(p: ParamWriter, b: BinWriter | None, w: dict, name: str, src: str, dst: str, cin: int, cout: int,
          k: int, *, stride: int | None = None, pad: int | None = None, scale: float | None = None) -> None:
    """A Convolution layer and, when weights are drawn, its fp16 kernel and fp32 bias. The stride
    field is written only when given (the decoder's real param omits it)."""
    fields = {"_0": cout, "_1": k}
    if stride is not None:
        fields["_3"] = stride
    fields.update(_4=k // 2 if pad is None else pad, _5=1, _6=cout * cin * k * k)
    p.layer("Convolution", name, [src], [dst], **fields)
    if b:
        w[name + ".weight"] = b.fp16((cout, cin, k, k), scale if scale is not None else (cin * k * k) ** -0.5)
        w[name + ".bias"] = b.fp32((cout,), 0.05)


def _group_norm(p: ParamWriter, b: BinWriter | None, w: dict, name: str, src: str, dst: str, groups: int,
                channels: int, eps: float) -> None:
    """A GroupNorm layer with affine gamma (around 1) and beta (around 0)."""
    p.layer("GroupNorm", name, [src], [dst], _0=groups, _1=channels, _2=eps, _3=1)
    if b:
        w[name + ".gamma"] = b.fp32((channels,), 0.1, 1.0)
        w[name + ".beta"] = b.fp32((channels,), 0.1)


def _unet(rng: np.random.Generator | None, lw: int, lh: int, hints: bool,
          weights: dict | None = None) -> tuple[str, bytes]:
    """The UNet graph for a lw x lh latent; with rng, also its weights (size independent)."""
    p = ParamWriter()
    b = BinWriter(rng) if rng is not None else None
    w = weights if weights is not None else {}

    conv = functools.partial(_conv, p, b, w, stride=1)

    extra = {"_n23330": _hint(lw, lh, 4)} if hints else {}
    p.layer("Input", "in0", [], ["in0"], _0=lw, _1=lh, _2=4, **extra)
    p.layer("Input", "in1", [], ["in1"])
    p.layer("Input", "in2", [], ["in2"])
    p.layer("Input", "c_in", [], ["c_in"])
    p.layer("Input", "c_out", [], ["c_out"])
    p.layer("Split", "split_in0", ["in0"], ["in0_a", "in0_b"])
    p.layer("BinaryOp", "pre_mul", ["in0_a", "c_in"], ["x_in"], _0=2)
    conv("conv_in", "x_in", "44", 4, UNET_CH, 3)
    # timestep embedding: t (0..999) -> 8 channels added to every position
    p.layer("InnerProduct", "time_0", ["in1"], ["time_0"], _0=UNET_CH, _1=1, _2=UNET_CH)
    if b:
        w["time_0.weight"] = b.fp16((UNET_CH, 1), 1.0 / 500)
        w["time_0.bias"] = b.fp32((UNET_CH,), 0.5)
    p.layer("Swish", "time_act", ["time_0"], ["time_1"])
    p.layer("InnerProduct", "time_1", ["time_1"], ["temb"], _0=UNET_CH, _1=1, _2=UNET_CH * UNET_CH)
    if b:
        w["time_1.weight"] = b.fp16((UNET_CH, UNET_CH), UNET_CH ** -0.5)
        w["time_1.bias"] = b.fp32((UNET_CH,), 0.05)
    p.layer("BinaryOp", "add_time", ["44", "temb"], ["h_0"], _0=0)
    contexts = [f"context_{k}" for k in range(16)]
    p.layer("Split", "split_context", ["in2"], contexts)

    h = "h_0"
    for k, divisor in enumerate(BLOCK_DIVISORS):
        bw, bh = lw // divisor, lh // divisor
        if k > 0 and divisor != BLOCK_DIVISORS[k - 1]:
            if divisor > BLOCK_DIVISORS[k - 1]:  # down: stride-2 convolution
                conv(f"down_{k}", h, f"down_{k}", UNET_CH, UNET_CH, 3, stride=2)
                h = f"down_{k}"
            else:  # up: nearest x2 then a convolution
                p.layer("Interp", f"up_{k}", [h], [f"up_{k}"], _0=1, _1=2.0, _2=2.0)
                conv(f"up_conv_{k}", f"up_{k}", f"up_conv_{k}", UNET_CH, UNET_CH, 3)
                h = f"up_conv_{k}"
        # transformer block: (w, h, C) -> tokens (C, h*w) -> cross-attention on the text -> back
        p.layer("Split", f"split_{k}", [h], [f"res_{k}", f"att_in_{k}"])
        p.layer("Permute", f"to_tokens_{k}", [f"att_in_{k}"], [f"perm_{k}"], _0=3)
        p.layer("Reshape", f"tokens_{k}", [f"perm_{k}"], [f"tok_{k}"], _0=UNET_CH, _1=bw * bh)
        p.layer("MultiHeadAttention", f"attn_{k}", [f"tok_{k}", contexts[k]], [f"att_{k}"],
                _0=UNET_CH, _1=UNET_HEADS, _2=UNET_CH * UNET_CH, _3=CONTEXT_DIM, _4=CONTEXT_DIM)
        if b:
            w[f"attn_{k}.q_weight"] = b.fp16((UNET_CH, UNET_CH), UNET_CH ** -0.5)
            w[f"attn_{k}.q_bias"] = b.fp32((UNET_CH,), 0.05)
            w[f"attn_{k}.k_weight"] = b.fp16((UNET_CH, CONTEXT_DIM), 2.0 * CONTEXT_DIM ** -0.5)
            w[f"attn_{k}.k_bias"] = b.fp32((UNET_CH,), 0.05)
            w[f"attn_{k}.v_weight"] = b.fp16((UNET_CH, CONTEXT_DIM), CONTEXT_DIM ** -0.5)
            w[f"attn_{k}.v_bias"] = b.fp32((UNET_CH,), 0.05)
            w[f"attn_{k}.out_weight"] = b.fp16((UNET_CH, UNET_CH), 0.5 * UNET_CH ** -0.5)
            w[f"attn_{k}.out_bias"] = b.fp32((UNET_CH,), 0.02)
        p.layer("Reshape", f"from_tokens_{k}", [f"att_{k}"], [f"back_{k}"], _0=UNET_CH, _1=bw, _2=bh)
        p.layer("Permute", f"to_image_{k}", [f"back_{k}"], [f"img_{k}"], _0=4)
        p.layer("BinaryOp", f"add_{k}", [f"res_{k}", f"img_{k}"], [f"h_{k + 1}"], _0=0)
        h = f"h_{k + 1}"

    _group_norm(p, b, w, "norm_out", h, "norm_out", 2, UNET_CH, 1e-5)
    p.layer("Swish", "act_out", ["norm_out"], ["act_out"])
    conv("conv_out", "act_out", "eps", UNET_CH, 4, 3, scale=0.5 * (UNET_CH * 9) ** -0.5)
    p.layer("BinaryOp", "mul_c_out", ["eps", "c_out"], ["eps_scaled"], _0=2)
    p.layer("BinaryOp", "add_x", ["in0_b", "eps_scaled"], ["outout"], _0=0)
    return p.text(), (b.data() if b else b"")


def _decoder(rng: np.random.Generator | None, lw: int, lh: int, hints: bool,
             weights: dict | None = None) -> tuple[str, bytes]:
    p = ParamWriter()
    b = BinWriter(rng) if rng is not None else None
    w = weights if weights is not None else {}
    C = DECODER_CH

    conv = functools.partial(_conv, p, b, w)

    extra = {"_n23330": _hint(lw, lh, 4)} if hints else {}
    p.layer("Input", "input.1", [], ["input.1"], _0=lw, _1=lh, _2=4, **extra)
    conv("conv_in", "input.1", "d0", 4, C, 3, scale=0.5 * (4 * 9) ** -0.5)
    p.layer("Split", "split_0", ["d0"], ["d0_res", "d0_att"])
    _group_norm(p, b, w, "attn_norm", "d0_att", "g0", 4, C, 1e-6)
    p.layer("Split", "split_qkv", ["g0"], ["g0_q", "g0_k", "g0_v"])
    conv("q", "g0_q", "q", C, C, 1)
    conv("k", "g0_k", "k", C, C, 1)
    conv("v", "g0_v", "v", C, C, 1)
    # the real decoder's mid-block attention: 3 Reshapes to (h*w, C), Gemm, Softmax, Gemm, 1 back
    p.layer("Reshape", "reshape_q", ["q"], ["q_flat"], _0=lw * lh, _1=C)
    p.layer("Permute", "transpose_q", ["q_flat"], ["q_t"], _0=1)
    p.layer("Reshape", "reshape_k", ["k"], ["k_flat"], _0=lw * lh, _1=C)
    p.layer("Gemm", "qk", ["q_t", "k_flat"], ["scores"])
    p.layer("BinaryOp", "scale", ["scores"], ["scores_scaled"], _0=2, _1=1, _2=float(C ** -0.5))
    p.layer("Softmax", "softmax", ["scores_scaled"], ["attn"], _0=1, _1=1)
    p.layer("Reshape", "reshape_v", ["v"], ["v_flat"], _0=lw * lh, _1=C)
    p.layer("Permute", "transpose_attn", ["attn"], ["attn_t"], _0=1)
    p.layer("Gemm", "av", ["v_flat", "attn_t"], ["attended"])
    p.layer("Reshape", "reshape_out", ["attended"], ["attended_3d"], _0=lw, _1=lh, _2=C)
    conv("proj", "attended_3d", "proj", C, C, 1)
    p.layer("BinaryOp", "add_attn", ["d0_res", "proj"], ["d1"], _0=0)
    h = "d1"
    for i in range(3):  # 1/8 -> 1/1 in three x2 steps
        p.layer("Interp", f"up_{i}", [h], [f"up_{i}"], _0=1, _1=2.0, _2=2.0)
        conv(f"up_conv_{i}", f"up_{i}", f"up_conv_{i}", C, C, 3)
        p.layer("Swish", f"up_act_{i}", [f"up_conv_{i}"], [f"up_act_{i}"])
        h = f"up_act_{i}"
    _group_norm(p, b, w, "norm_out", h, "norm_out", 4, C, 1e-6)
    p.layer("Swish", "act_out", ["norm_out"], ["act_out"])
    conv("conv_out", "act_out", "815", C, 3, 3, scale=0.6 * (C * 9) ** -0.5)
    return p.text(), (b.data() if b else b"")


def _encoder(rng: np.random.Generator | None, width: int, height: int,
             weights: dict | None = None) -> tuple[str, bytes]:
    """img2img's VAE encoder: image -> latent mean (out0) and std (out1). Unused by txt2img."""
    p = ParamWriter()
    b = BinWriter(rng) if rng is not None else None
    w = weights if weights is not None else {}
    lw, lh, C = width // 8, height // 8, UNET_CH

    conv = functools.partial(_conv, p, b, w, stride=1)

    p.layer("Input", "in0", [], ["in0"])
    h, cin = "in0", 3
    for i in range(3):  # asymmetric pad + stride-2 convolution, as SD's Downsample
        p.layer("Padding", f"pad_{i}", [h], [f"pad_{i}"], _0=0, _1=1, _2=0, _3=1)
        conv(f"down_{i}", f"pad_{i}", f"down_{i}", cin, C, 3, stride=2, pad=0)
        h, cin = f"down_{i}", C
    _group_norm(p, b, w, "attn_norm", h, "g0", 2, C, 1e-6)
    p.layer("Reshape", "view", ["g0"], ["flat"], _0=lw * lh, _1=C)
    p.layer("Permute", "transpose_in", ["flat"], ["tokens"], _0=1)
    p.layer("MultiHeadAttention", "attention", ["tokens"], ["attended"], _0=C, _1=1, _2=C * C, _3=C, _4=C)
    if b:
        for part in ("q", "k", "v", "out"):
            w[f"attention.{part}_weight"] = b.fp16((C, C), C ** -0.5)
            w[f"attention.{part}_bias"] = b.fp32((C,), 0.05)
    p.layer("Permute", "transpose_out", ["attended"], ["attended_t"], _0=1)
    p.layer("Reshape", "reshape", ["attended_t"], ["attended_3d"], _0=lw, _1=lh, _2=C)
    conv("moments", "attended_3d", "moments", C, 8, 1)
    p.layer("Slice", "chunk_0", ["moments"], ["out0", "logvar"], _n23300="2,-233,-233", _1=0)
    p.layer("Clip", "clamp", ["logvar"], ["logvar_c"], _0=-30.0, _1=20.0)
    p.layer("BinaryOp", "half", ["logvar_c"], ["half_logvar"], _0=2, _1=1, _2=0.5)
    p.layer("UnaryOp", "exp", ["half_logvar"], ["out1"], _0=7)
    return p.text(), (b.data() if b else b"")


# ---- the folder -------------------------------------------------------------------------------

def _write(path: Path, data: bytes | str) -> None:
    atomic_write(path, data)  # a reader never sees a half-written asset


def write_tiny_assets(out_dir: Path, seed: int = 0, bpe_gz: Path | None = None) -> TinyWeights:
    """Write the tiny asset folder to ``out_dir``; returns the weights written (fp16-rounded)."""
    if bpe_gz is None:
        from localai.fetch import fetch_file

        bpe_gz = fetch_file("clip_bpe_vocab")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    weights = TinyWeights()

    _write(out_dir / "vocab.txt", "".join(token + "\n" for token in clip_vocab(bpe_gz)))
    _write(out_dir / "log_sigmas.bin", log_sigmas().astype("<f4").tobytes())

    clip_param, clip_bin, weights.clip = _clip(rng)
    _write(out_dir / "FrozenCLIPEmbedder-fp16.param", clip_param)
    _write(out_dir / "FrozenCLIPEmbedder-fp16.bin", clip_bin)

    base_param, unet_bin = _unet(rng, 32, 32, hints=False, weights=weights.unet)
    _write(out_dir / "UNetModel-base-MHA-fp16.param", base_param)
    _write(out_dir / "UNetModel-MHA-fp16.bin", unet_bin)
    for side in (256, 512):
        _write(out_dir / f"UNetModel-{side}-{side}-MHA-fp16-opt.param", _unet(None, side // 8, side // 8, True)[0])

    base_param, decoder_bin = _decoder(rng, 32, 32, hints=False, weights=weights.decoder)
    _write(out_dir / "AutoencoderKL-base-fp16.param", base_param)
    _write(out_dir / "AutoencoderKL-fp16.bin", decoder_bin)
    for side in (256, 512):
        _write(out_dir / f"AutoencoderKL-{side}-{side}-fp16-opt.param", _decoder(None, side // 8, side // 8, True)[0])

    encoder_param, encoder_bin = _encoder(rng, 512, 512, weights=weights.encoder)
    _write(out_dir / "AutoencoderKL-encoder-512-512-fp16.param", encoder_param)
    _write(out_dir / "AutoencoderKL-encoder-512-512-fp16.bin", encoder_bin)
    _write(out_dir / "tmp-AutoencoderKL-encoder-256-256-fp16.param", _encoder(None, 256, 256)[0])
    return weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localai.sdassets", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    args = parser.parse_args(argv)
    write_tiny_assets(args.out_dir, args.seed)
    total = sum((args.out_dir / name).stat().st_size for name in ASSET_FILES)
    print(f"wrote {len(ASSET_FILES)} files ({total / 1e6:.1f} MB) to {args.out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
