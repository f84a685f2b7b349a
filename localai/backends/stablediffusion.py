"""The ``stablediffusion`` backend: text-to-image through our sd-ncnn pipeline.

A model YAML names the asset folder (EdVince's Stable-Diffusion-NCNN files) by ``asset_dir``
or, as LocalAI's gallery entries do, by ``parameters.model``; either is a path inside the
models folder. The native library exists only in builds made with the stablediffusion flag
(``python3 build.py --stablediffusion`` or BUILD_TAGS=stablediffusion); without it every image
request is answered with CapabilityUnavailable (HTTP 501) and nothing else changes.
"""

from __future__ import annotations

import importlib.util
import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from localai.capabilities import ImageRequest
from localai.config import ModelConfig, resolve_model_file
from localai.errors import CapabilityUnavailable, ConfigError, InvalidRequest, RequestTimedOut
from localai.settings import Settings

log = logging.getLogger("localai.sd")

DEFAULT_STEPS = 15  # LocalAI's default for this backend
ENABLE_HINT = ("This server was built without the image generation backend. Rebuild it with "
               "`python3 build.py --stablediffusion` (or BUILD_TAGS=stablediffusion, as for LocalAI), "
               "then restart it.")


def available() -> bool:
    """Whether this build has the sd-ncnn bindings (a stale build still counts: it fails loudly)."""
    return importlib.util.find_spec("localai._native._sd_cffi") is not None


def require() -> None:
    if not available():
        raise CapabilityUnavailable(ENABLE_HINT)


def asset_dir(config: ModelConfig, models_path: Path) -> Path:
    """The model's asset folder: ``asset_dir``, else ``parameters.model``, inside the models folder."""
    if config.asset_dir:
        folder = resolve_model_file(config.asset_dir, models_path, what=f"{config.name}: asset_dir")
    else:
        folder = config.model_path(models_path)
    if folder is None:
        raise ConfigError(f"{config.name}: a stablediffusion model needs `asset_dir` (or parameters.model) "
                          "naming its asset folder inside the models folder")
    if not folder.is_dir():
        # Named as the YAML names it: an API client has no business learning the server's paths.
        shown = config.asset_dir or config.parameters.model
        raise ConfigError(f"{config.name}: the asset folder {shown!r} does not exist in the models folder; see the "
                          "README's "
                          "\"Image generation\" section for how to install the assets")
    return folder


class StableDiffusionEngine:
    """One opened asset folder; generations run one at a time (each uses every core)."""

    def __init__(self, config: ModelConfig, settings: Settings):
        require()
        from localai.bindings import sd
        from localai.fetch import cache_dir

        self.config = config
        self.sd = sd
        folder = asset_dir(config, settings.models_path)
        threads = config.threads or settings.threads or 0
        # Params rewritten for other sizes go to the cache, named after the base param's content.
        self.pipeline = sd.Pipeline(folder, cache_dir() / "sd-ncnn", threads=threads)
        self._lock = threading.Lock()

    def request(self, *, prompt: str, width: int, height: int, steps: int | None = None, mode: int | None = None,
                seed: int | None = None) -> ImageRequest:
        """Validate one image request, filling defaults from the model YAML (then LocalAI's)."""
        if not self.sd.size_supported(width, height):
            raise InvalidRequest(
                f"Unsupported size {width}x{height}: width and height must be multiples of {self.sd.SIDE_MULTIPLE} "
                f"between {self.sd.MIN_SIDE} and {self.sd.MAX_SIDE} (256x256 and 512x512 are the fastest).",
                param="size")
        if steps is None:
            configured = self.config.extra.get("step")
            steps = configured if isinstance(configured, int) and configured > 0 else DEFAULT_STEPS
        if not 1 <= steps <= self.sd.MAX_STEPS:
            raise InvalidRequest(f"step must be between 1 and {self.sd.MAX_STEPS}, got {steps}.", param="step")
        mode = 0 if mode is None else mode
        if mode not in (0, 1):
            raise InvalidRequest("mode must be 0 (less memory) or 1 (faster, more memory).", param="mode")
        if seed is None:
            seed = self.config.parameters.seed
        if seed is None or seed < 0:  # LocalAI: a negative seed means "pick one"
            seed = secrets.randbits(32)
        positive, _, negative = prompt.partition("|")
        return ImageRequest(positive, negative, width, height, steps, mode, seed)

    def generate(self, request: ImageRequest, *, abandoned: Callable[[], bool] | None = None,
                 deadline: float | None = None) -> np.ndarray:
        """RGB pixels (H, W, 3) of one image. While it runs, a watcher stops it between two steps
        when ``abandoned()`` says the client left, or at ``deadline`` (RequestTimedOut)."""
        cancel = self.sd.cancel_flag()
        done = threading.Event()
        stopped_by: list[str] = []

        def watch() -> None:
            while not done.wait(0.25):
                if abandoned is not None and abandoned():
                    stopped_by.append("client")
                elif deadline is not None and time.monotonic() > deadline:
                    stopped_by.append("timeout")
                if stopped_by:
                    cancel[0] = 1
                    return

        watcher = threading.Thread(target=watch, name="sd-watch", daemon=True)
        watcher.start()
        try:
            with self._lock:
                image, timings = self.pipeline.generate(
                    request.prompt, request.negative_prompt, width=request.width, height=request.height,
                    steps=request.steps, mode=request.mode, seed=request.seed, cancel=cancel)
        except self.sd.Cancelled:
            if stopped_by == ["timeout"]:
                raise RequestTimedOut("The image took longer than this server's --request-timeout; ask for fewer "
                                      "steps or a smaller size.") from None
            raise InvalidRequest("The client went away; the image generation was cancelled.") from None
        finally:
            done.set()
            watcher.join()
        log.info("image %dx%d, %d steps, mode %d, seed %d: load %.0f ms, text %.0f ms, sampling %.0f ms "
                 "(%.0f ms/step), decode %.0f ms", request.width, request.height, request.steps, request.mode,
                 request.seed, timings.load_ms, timings.encode_ms, timings.sample_ms,
                 timings.sample_ms / max(1, request.steps), timings.decode_ms)
        return image

    def close(self) -> None:
        self.pipeline.close()


def load(config: ModelConfig, settings: Settings, shared: object = None) -> StableDiffusionEngine:
    return StableDiffusionEngine(config, settings)
