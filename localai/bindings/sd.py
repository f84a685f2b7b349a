"""Typed wrappers over libsdncnn (via the compiled ``_sd_cffi`` module).

Arrays cross the boundary as numpy: a latent is float32 (4, H/8, W/8), a text context
float32 (rows, 768), an image uint8 (H, W, 3) RGB. The native calls release the GIL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from localai.bindings import NativeHandle, check_status, load_native
from localai.errors import InvalidRequest, ModelLoadError, NativeError

_native = load_native("_sd_cffi")
ffi, lib = _native.ffi, _native.lib

LATENT_CHANNELS = lib.SD_LATENT_CHANNELS
CHUNK_TOKENS = lib.SD_CHUNK_TOKENS
CONTEXT_DIM = lib.SD_CONTEXT_DIM
TRAIN_STEPS = lib.SD_TRAIN_STEPS
MAX_STEPS = lib.SD_MAX_STEPS
MIN_SIDE, MAX_SIDE, SIDE_MULTIPLE = lib.SD_MIN_SIDE, lib.SD_MAX_SIDE, lib.SD_SIDE_MULTIPLE
DEFAULT_GUIDANCE = 7.5
_U64 = (1 << 64) - 1


def _error(prefix: str) -> str:
    message = _last_error()
    return f"{prefix}: {message}" if message else prefix


class Cancelled(NativeError):
    """A generation was cancelled between two steps."""


# SD_ERR_INVALID: the caller's arguments (size, steps, mode, prompt length)
_ERRORS = {lib.SD_ERR_INVALID: InvalidRequest, lib.SD_ERR_CANCELLED: Cancelled}


def cancel_flag():
    """A flag a running generation polls between steps: set ``flag[0] = 1`` to stop it."""
    return ffi.new("int32_t *")


def _last_error() -> str:
    return ffi.string(lib.sd_last_error()).decode("utf-8", "replace")


def _check(status: int, what: str) -> int:
    return check_status(status, what, _last_error, _ERRORS)


def version() -> str:
    return ffi.string(lib.sd_version()).decode()


def size_supported(width: int, height: int) -> bool:
    return bool(lib.sd_size_supported(int(width), int(height)))


def _floats(array: np.ndarray, shape: tuple[int, ...] | None = None, what: str = "array") -> np.ndarray:
    out = np.ascontiguousarray(array, dtype=np.float32)
    if shape is not None and out.shape != shape:
        raise InvalidRequest(f"{what} has shape {out.shape}, expected {shape}")
    return out


def _ptr(array: np.ndarray, ctype: str = "float *"):
    return ffi.cast(ctype, ffi.from_buffer(array))


# ---- sampler arithmetic --------------------------------------------------------------------

def sigmas(log_sigmas: np.ndarray, steps: int) -> np.ndarray:
    """The steps+1 noise levels of the sampler (the last is 0)."""
    table = _floats(log_sigmas, (TRAIN_STEPS,), "log_sigmas")
    out = np.empty(steps + 1, dtype=np.float32)
    _check(lib.sd_sigmas(_ptr(table), int(steps), _ptr(out)), "sd_sigmas")
    return out


def sigma_to_t(log_sigmas: np.ndarray, sigma: float) -> float:
    table = _floats(log_sigmas, (TRAIN_STEPS,), "log_sigmas")
    return float(lib.sd_sigma_to_t(_ptr(table), float(sigma)))


def noise(seed: int, stream: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal noise: stream 0 starts the latent, stream k+1 is added after step k."""
    out = np.empty(shape, dtype=np.float32)
    lib.sd_noise(int(seed) & _U64, int(stream), _ptr(out), out.size)
    return out


def euler_ancestral_step(x: np.ndarray, cond: np.ndarray, uncond: np.ndarray, guidance: float, sigma: float,
                         sigma_next: float, step_noise: np.ndarray | None) -> np.ndarray:
    """One guided Euler-ancestral step; returns the new latent (x is not modified)."""
    out = np.array(x, dtype=np.float32, copy=True, order="C")
    c = _floats(cond, out.shape, "cond")
    u = _floats(uncond, out.shape, "uncond")
    n = ffi.NULL if step_noise is None else _ptr(_floats(step_noise, out.shape, "noise"))
    lib.sd_euler_ancestral_step(_ptr(out), _ptr(c), _ptr(u), out.size, float(guidance), float(sigma),
                                float(sigma_next), n)
    return out


# ---- tokenizer ------------------------------------------------------------------------------

class Tokenizer(NativeHandle):
    """The pipeline's CLIP tokenizer over a vocab.txt, with its A1111 prompt-attention parser."""

    _free = staticmethod(lib.sd_tokenizer_close)

    def __init__(self, vocab_path: Path | str):
        handle = lib.sd_tokenizer_open(str(vocab_path).encode())
        if handle == ffi.NULL:
            raise ModelLoadError(_error(f"cannot load the tokenizer {vocab_path}"))
        self._ptr = handle

    def tokenize(self, text: str) -> tuple[list[int], list[float]]:
        """Ids and weights in 77-token chunks ([BOS, 75, EOS] each)."""
        handle = self._live()
        raw = text.encode("utf-8")
        count = _check(lib.sd_tokenize(handle, raw, ffi.NULL, ffi.NULL, 0), "sd_tokenize")
        ids = np.empty(count, dtype=np.int32)
        weights = np.empty(count, dtype=np.float32)
        _check(lib.sd_tokenize(handle, raw, _ptr(ids, "int32_t *"), _ptr(weights), count), "sd_tokenize")
        return ids.tolist(), weights.tolist()


# ---- pipeline -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Timings:
    load_ms: float
    encode_ms: float
    sample_ms: float
    decode_ms: float
    unet_runs: int


class Pipeline(NativeHandle):
    """An opened asset folder; nets load on first use (UNet and decoder per size and mode)."""

    _free = staticmethod(lib.sd_pipeline_close)

    def __init__(self, asset_dir: Path | str, cache_dir: Path | str, threads: int = 0):
        handle = lib.sd_pipeline_open(str(asset_dir).encode(), str(cache_dir).encode(), int(threads))
        if handle == ffi.NULL:
            raise ModelLoadError(_error(f"cannot open the Stable Diffusion assets in {asset_dir}"))
        self._ptr = handle
        # Held around every native call and close(): the C side serialises calls too, but must
        # never be freed while one runs.
        self._lock = threading.Lock()

    def generate(self, prompt: str, negative_prompt: str = "", *, width: int = 512, height: int = 512,
                 steps: int = 15, mode: int = 0, seed: int = 0, guidance: float = DEFAULT_GUIDANCE,
                 cancel=None) -> tuple[np.ndarray, Timings]:
        """An RGB image (H, W, 3) and where the time went. Same arguments, same pixels.
        ``cancel``: an ``int32_t *`` from ``cancel_flag()``; set to 1, the run stops (``Cancelled``)."""
        request = ffi.new("sd_request *")
        prompt_c = ffi.new("char[]", prompt.encode("utf-8"))  # kept alive for the call
        negative_c = ffi.new("char[]", (negative_prompt or "").encode("utf-8"))
        request.width, request.height = int(width), int(height)
        request.steps, request.mode = int(steps), int(mode)
        request.seed = int(seed) & _U64
        request.guidance = float(guidance)
        request.prompt, request.negative_prompt = prompt_c, negative_c
        if cancel is not None:
            request.cancel = cancel
        image = np.empty((int(height), int(width), 3), dtype=np.uint8)
        timings = ffi.new("sd_timings *")
        with self._lock:
            _check(lib.sd_generate(self._live(), request, _ptr(image, "uint8_t *"), timings),
                   "image generation failed")
        return image, Timings(timings.load_ms, timings.encode_ms, timings.sample_ms, timings.decode_ms,
                              timings.unet_runs)

    def encode_prompt(self, prompt: str) -> np.ndarray:
        raw = prompt.encode("utf-8")
        with self._lock:
            rows = _check(lib.sd_encode_prompt(self._live(), raw, ffi.NULL, 0), "text encoder")
            out = np.empty((rows, CONTEXT_DIM), dtype=np.float32)
            _check(lib.sd_encode_prompt(self._live(), raw, _ptr(out), rows), "text encoder")
        return out

    def denoise(self, x: np.ndarray, sigma: float, context: np.ndarray, *, mode: int = 0) -> np.ndarray:
        """One UNet evaluation: the denoised estimate of latent x (4, H/8, W/8) at noise level sigma."""
        x = _floats(x)
        if x.ndim != 3 or x.shape[0] != LATENT_CHANNELS:
            raise InvalidRequest(f"a latent has shape (4, H/8, W/8), got {x.shape}")
        context = _floats(context)
        if context.ndim != 2 or context.shape[1] != CONTEXT_DIM:
            raise InvalidRequest(f"a context has shape (rows, {CONTEXT_DIM}), got {context.shape}")
        out = np.empty_like(x)
        height, width = x.shape[1] * 8, x.shape[2] * 8
        with self._lock:
            _check(lib.sd_denoise(self._live(), width, height, int(mode), _ptr(x), float(sigma), _ptr(context),
                                  context.shape[0], _ptr(out)), "UNet")
        return out

    def decode(self, latent: np.ndarray) -> np.ndarray:
        latent = _floats(latent)
        if latent.ndim != 3 or latent.shape[0] != LATENT_CHANNELS:
            raise InvalidRequest(f"a latent has shape (4, H/8, W/8), got {latent.shape}")
        height, width = latent.shape[1] * 8, latent.shape[2] * 8
        image = np.empty((height, width, 3), dtype=np.uint8)
        with self._lock:
            _check(lib.sd_decode(self._live(), width, height, _ptr(latent), _ptr(image, "uint8_t *")),
                   "VAE decoder")
        return image

    def log_sigmas(self) -> np.ndarray:
        out = np.empty(TRAIN_STEPS, dtype=np.float32)
        with self._lock:
            _check(lib.sd_log_sigmas(self._live(), _ptr(out)), "sd_log_sigmas")
        return out

    def close(self) -> None:
        """Free the nets (the real UNet holds gigabytes). Idempotent; waits for a running call."""
        with self._lock:
            super().close()
