"""/v1/images/generations (OpenAI's image API, LocalAI's fields) and /generated-images/<file>.

Request: ``prompt`` ("positive|negative": the part after the first ``|`` is the negative
prompt), ``size`` "WxH" (LocalAI: no "x" means 512x512), ``n``, ``response_format`` url |
b64_json, and LocalAI's ``step``, ``mode`` (0 less memory, 1 faster) and ``seed``. Image i of
``n`` uses seed + i, so a request with a seed is reproducible image by image.
``url`` answers point at this server's /generated-images/ route, which serves the PNGs
written to the generated-images folder (``--generated-images-path``; default
``<models>/generated-images``).
"""

from __future__ import annotations

import base64
import io
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Any

from werkzeug.utils import send_file
from werkzeug.wrappers import Response

from localai.api import schemas
from localai.api.http import ApiRequest, Server, client_gone, deadline, json_response, read_json_object
from localai.backends import stablediffusion
from localai.capabilities import Capability
from localai.config import ModelConfig
from localai.errors import InvalidRequest, NotFound
from localai.files import atomic_write

MAX_IMAGES = 10  # OpenAI's limit for n
# steps x pixels x n one request may ask for, in steps at 512x512 (e.g. 10 images of 30 steps at 512x512)
MAX_IMAGE_WORK = 300
MAX_PROMPT_CHARS = 8000
RESPONSE_FORMATS = ("url", "b64_json")
_SIZE = re.compile(r"^\s*(\d{1,5})\s*x\s*(\d{1,5})\s*$")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def images_dir(app: Server) -> Path:
    return app.settings.images_path


def parse_size(value: Any) -> tuple[int, int]:
    """(width, height) of LocalAI's "WxH"; a value without "x" means 512x512, as in LocalAI."""
    if value is None:
        return 512, 512
    if not isinstance(value, str):
        raise InvalidRequest("'size' must be a string like \"256x256\".", param="size")
    if "x" not in value:
        return 512, 512
    match = _SIZE.match(value)
    if not match:
        raise InvalidRequest(f"Invalid size {value!r}: expected \"WIDTHxHEIGHT\", e.g. \"512x512\".", param="size")
    return int(match.group(1)), int(match.group(2))


def _optional_int(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"'{name}' must be an integer.", param=name)
    return value


def _image_model(app: Server, body: dict, request: ApiRequest) -> ModelConfig:
    """The requested model (or the one the bearer token names) when it generates images, else
    the first configured model that does."""
    name = body.get("model")
    if name:
        return app.resolve_model(request, name)
    manager = app.manager
    if manager.configs:
        named = app.resolve_model(request, None)
        if Capability.IMAGES in manager.capabilities(named):
            return named
    config = next((c for c in manager.configs.values() if Capability.IMAGES in manager.capabilities(c)), None)
    if config is None:
        raise InvalidRequest("No image generation model is configured: add a model YAML with "
                             "`backend: stablediffusion` (see the README's \"Image generation\" section).",
                             param="model", code="model_not_found")
    request.record.model = config.name
    return config


def _png(pixels) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # uint8 (H, W, 3): RGB
    return buffer.getvalue()


def _save(folder: Path, png: bytes) -> str:
    """Write a PNG under a fresh random name ("b64<hex>.png", after LocalAI's naming); returns the name."""
    name = f"b64{secrets.token_hex(12)}.png"
    atomic_write(folder / name, png)
    return name


def on_images(app: Server, request: ApiRequest) -> Response:
    body = read_json_object(request)
    stablediffusion.require()  # 501 with how to enable it, before anything else is looked at
    schemas.validate("images", body)

    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("'prompt' must be a non-empty string.", param="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(f"'prompt' is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS} are allowed.",
                             param="prompt")
    n = _optional_int(body, "n")
    n = 1 if n is None else n
    if not 1 <= n <= MAX_IMAGES:
        raise InvalidRequest(f"'n' must be between 1 and {MAX_IMAGES}.", param="n")
    response_format = body.get("response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)}.",
                             param="response_format")
    width, height = parse_size(body.get("size"))
    steps, mode, seed = _optional_int(body, "step"), _optional_int(body, "mode"), _optional_int(body, "seed")

    config = _image_model(app, body, request)
    engine = app.manager.engine_for(config, Capability.IMAGES)
    first = engine.request(prompt=prompt, width=width, height=height, steps=steps, mode=mode, seed=seed)
    work = n * first.steps * width * height / (512 * 512)
    if work > MAX_IMAGE_WORK:
        raise InvalidRequest(f"{n} images of {width}x{height} with {first.steps} steps are {work:.0f} units of work "
                             f"(a unit: one step at 512x512); at most {MAX_IMAGE_WORK} are done per request.",
                             param="n")
    abandoned, stop_at = client_gone(request), deadline(app.settings)

    data = []
    folder = images_dir(app)
    for i in range(n):
        image = engine.generate(first if i == 0 else
                                engine.request(prompt=prompt, width=width, height=height, steps=first.steps,
                                               mode=first.mode, seed=(first.seed + i) & ((1 << 64) - 1)),
                                abandoned=abandoned, deadline=stop_at)
        png = _png(image)
        if response_format == "b64_json":
            data.append({"b64_json": base64.b64encode(png).decode("ascii")})
        else:
            name = _save(folder, png)
            data.append({"url": f"{request.host_url.rstrip('/')}/generated-images/{name}"})
    return json_response({"created": int(time.time()), "data": data})


def on_generated_image(app: Server, request: ApiRequest, filename: str) -> Response:
    """A file written by on_images(): only plain files directly inside the images folder."""
    missing = NotFound(f"No generated image named {filename!r}.")
    if not _FILENAME.match(filename):
        raise missing
    folder = images_dir(app)
    path = folder / filename
    try:
        info = os.lstat(path)  # lstat: a symlink placed in the folder is not followed
    except OSError:
        raise missing from None
    if not stat.S_ISREG(info.st_mode):
        raise missing
    mimetype = "image/png" if filename.endswith(".png") else "application/octet-stream"
    return send_file(str(path), request.environ, mimetype=mimetype, max_age=3600)

