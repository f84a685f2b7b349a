"""numpy forward passes of the tiny Stable Diffusion asset set (localai.sdassets) and of the
sampler arithmetic: an independent oracle for the native sd-ncnn pipeline.

Array layouts follow ncnn's Mat: a (w, h, c) blob is numpy [c][h][w].
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from localai import sdassets


# ---- layers -------------------------------------------------------------------------------------

def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int = 1, pad: int | None = None) -> np.ndarray:
    cout, cin, k, _ = weight.shape
    pad = k // 2 if pad is None else pad
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    h_out = (xp.shape[1] - k) // stride + 1
    w_out = (xp.shape[2] - k) // stride + 1
    cols = np.empty((cin, k, k, h_out, w_out), dtype=np.float64)
    for i in range(k):
        for j in range(k):
            cols[:, i, j] = xp[:, i:i + stride * h_out:stride, j:j + stride * w_out:stride]
    out = weight.reshape(cout, -1).astype(np.float64) @ cols.reshape(cin * k * k, -1)
    return out.reshape(cout, h_out, w_out) + bias[:, None, None]


def group_norm(x: np.ndarray, groups: int, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    g = x.reshape(groups, -1)
    g = (g - g.mean(axis=1, keepdims=True)) / np.sqrt(g.var(axis=1, keepdims=True) + eps)
    return g.reshape(x.shape) * gamma[:, None, None] + beta[:, None, None]


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def swish(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def upsample2(x: np.ndarray) -> np.ndarray:
    return x.repeat(2, axis=1).repeat(2, axis=2)


def attention(q_in: np.ndarray, kv_in: np.ndarray, w: dict, prefix: str, heads: int) -> np.ndarray:
    q = q_in @ w[f"{prefix}.q_weight"].T + w[f"{prefix}.q_bias"]
    k = kv_in @ w[f"{prefix}.k_weight"].T + w[f"{prefix}.k_bias"]
    v = kv_in @ w[f"{prefix}.v_weight"].T + w[f"{prefix}.v_bias"]
    dim = q.shape[1] // heads
    out = np.concatenate([softmax(q[:, h * dim:(h + 1) * dim] @ k[:, h * dim:(h + 1) * dim].T / math.sqrt(dim))
                          @ v[:, h * dim:(h + 1) * dim] for h in range(heads)], axis=1)
    return out @ w[f"{prefix}.out_weight"].T + w[f"{prefix}.out_bias"]


# ---- the tiny networks ----------------------------------------------------------------------------

def clip_chunk(w: dict, ids: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
    """One 77-token chunk through the tiny text encoder and the attention-weighting tail: (77, 768)."""
    h = w["embed"][ids].astype(np.float64) + w["position"]
    h = layer_norm(h, w["ln_0.gamma"], w["ln_0.beta"], 1e-5)
    h = h @ w["projection.weight"].T + w["projection.bias"]
    z = layer_norm(h, w["ln_final.gamma"], w["ln_final.beta"], 1e-5)
    weighted = z * np.asarray(multipliers, dtype=np.float64)[:, None]
    return weighted * (z.mean() / weighted.mean())


def unet(w: dict, x: np.ndarray, t: float, context: np.ndarray, c_in: float, c_out: float) -> np.ndarray:
    """outout = x + c_out * eps(x * c_in, t, context); x is (4, H/8, W/8)."""
    x = x.astype(np.float64)
    h = conv2d(x * c_in, w["conv_in.weight"], w["conv_in.bias"])
    t1 = swish(w["time_0.weight"][:, 0] * t + w["time_0.bias"])
    temb = w["time_1.weight"] @ t1 + w["time_1.bias"]
    h = h + temb[:, None, None]
    ctx = context.astype(np.float64)
    for k, divisor in enumerate(sdassets.BLOCK_DIVISORS):
        if k > 0 and divisor != sdassets.BLOCK_DIVISORS[k - 1]:
            if divisor > sdassets.BLOCK_DIVISORS[k - 1]:
                h = conv2d(h, w[f"down_{k}.weight"], w[f"down_{k}.bias"], stride=2)
            else:
                h = conv2d(upsample2(h), w[f"up_conv_{k}.weight"], w[f"up_conv_{k}.bias"])
        c, hh, ww = h.shape
        tokens = h.transpose(1, 2, 0).reshape(hh * ww, c)
        attended = attention(tokens, ctx, w, f"attn_{k}", sdassets.UNET_HEADS)
        h = h + attended.reshape(hh, ww, c).transpose(2, 0, 1)
    h = swish(group_norm(h, 2, w["norm_out.gamma"], w["norm_out.beta"], 1e-5))
    eps = conv2d(h, w["conv_out.weight"], w["conv_out.bias"])
    return x + c_out * eps


def decoder(w: dict, latent: np.ndarray) -> np.ndarray:
    """(3, H, W) in about [-1, 1] from a (4, H/8, W/8) latent already divided by 0.18215."""
    h = conv2d(latent.astype(np.float64), w["conv_in.weight"], w["conv_in.bias"])
    g = group_norm(h, 4, w["attn_norm.gamma"], w["attn_norm.beta"], 1e-6)
    q, k, v = (conv2d(g, w[f"{n}.weight"], w[f"{n}.bias"]) for n in ("q", "k", "v"))
    c, hh, ww = q.shape
    scores = q.reshape(c, -1).T @ k.reshape(c, -1) * c ** -0.5
    attended = v.reshape(c, -1) @ softmax(scores).T
    h = h + conv2d(attended.reshape(c, hh, ww), w["proj.weight"], w["proj.bias"])
    for i in range(3):
        h = swish(conv2d(upsample2(h), w[f"up_conv_{i}.weight"], w[f"up_conv_{i}.bias"]))
    h = swish(group_norm(h, 4, w["norm_out.gamma"], w["norm_out.beta"], 1e-6))
    return conv2d(h, w["conv_out.weight"], w["conv_out.bias"])


def to_pixels(image: np.ndarray) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> uint8 (H, W, 3), rounded and clamped."""
    return np.clip(np.round((image + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)


# ---- sampler arithmetic ---------------------------------------------------------------------------

def sigmas(log_sigmas: np.ndarray, steps: int) -> np.ndarray:
    """k-diffusion get_sigmas for a discrete schedule, plus the final 0."""
    t = np.linspace(999, 0, steps) if steps > 1 else np.array([999.0])
    low, high = np.floor(t).astype(int), np.ceil(t).astype(int)
    frac = t - low
    log_sigma = (1 - frac) * log_sigmas[low].astype(np.float64) + frac * log_sigmas[high]
    return np.append(np.exp(log_sigma), 0.0)


def sigma_to_t(log_sigmas: np.ndarray, sigma: float) -> float:
    """k-diffusion DiscreteSchedule.sigma_to_t."""
    ls = log_sigmas.astype(np.float64)
    log_sigma = math.log(sigma)
    dists = log_sigma - ls
    low = int(np.cumsum(dists >= 0).argmax())
    low = min(low, len(ls) - 2)
    w = float(np.clip((ls[low] - log_sigma) / (ls[low] - ls[low + 1]), 0, 1))
    return (1 - w) * low + w * (low + 1)


def euler_ancestral(x, cond, uncond, guidance, sigma, sigma_next, noise):
    """k-diffusion sample_euler_ancestral (eta 1) on a classifier-free guided estimate."""
    denoised = uncond + guidance * (cond - uncond)
    sigma_up = min(sigma_next, math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2))
    sigma_down = math.sqrt(sigma_next ** 2 - sigma_up ** 2)
    x = x + (x - denoised) / sigma * (sigma_down - sigma)
    return x + noise * sigma_up if sigma_next > 0 else x


_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def noise(seed: int, stream: int, n: int) -> np.ndarray:
    """The documented noise generator: SplitMix64 counters, Box-Muller in double."""
    key = _splitmix(np.uint64(seed & _MASK) ^ _splitmix(np.uint64((_GOLDEN * (stream + 1)) & _MASK)))
    pairs = (n + 1) // 2
    index = np.arange(2 * pairs, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = _splitmix(key + np.uint64(_GOLDEN) * (index + np.uint64(1))) >> np.uint64(11)
    u = (bits.astype(np.float64) + 0.5) * 2.0 ** -53
    radius = np.sqrt(-2.0 * np.log(u[0::2]))
    angle = 2.0 * np.pi * u[1::2]
    out = np.empty(2 * pairs)
    out[0::2] = radius * np.cos(angle)
    out[1::2] = radius * np.sin(angle)
    return out[:n].astype(np.float32)


# ---- CLIP BPE from the real merges list (the tokenizer's reference) -------------------------------

class ClipBPE:
    """OpenAI CLIP's SimpleTokenizer for ASCII text, from bpe_simple_vocab_16e6.txt.gz's merges."""

    def __init__(self, bpe_gz: Path):
        import re

        self.merges = {pair: i for i, pair in enumerate(sdassets.clip_merges(bpe_gz))}
        self.encoder = {token: i for i, token in enumerate(sdassets.clip_vocab(bpe_gz))}
        printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                     + list(range(ord("®"), ord("ÿ") + 1)))
        extra, self.byte_encoder = 0, {}
        for b in range(256):
            if b in printable:
                self.byte_encoder[b] = chr(b)
            else:
                self.byte_encoder[b] = chr(256 + extra)
                extra += 1
        # CLIP's pattern with \p{L} / \p{N} spelled for Python's re (ASCII prompts)
        self.pattern = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|[^\s\w]+|_+",
                                  re.IGNORECASE)

    def bpe(self, token: str) -> list[str]:
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.merges.get(p, float("inf")))
            if best not in self.merges:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text: str) -> list[int]:
        import re

        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for piece in self.pattern.findall(text):
            if piece in ("<|startoftext|>", "<|endoftext|>"):
                ids.append(self.encoder[piece])
                continue
            symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self.bpe(symbols))
        return ids
