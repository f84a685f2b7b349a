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
import stat
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import NotFound
from werkzeug.utils import send_file
from werkzeug.wrappers import Request, Response

from localai.api.errors import bad_request
from localai.backends import stablediffusion
from localai.config import ModelConfig

if TYPE_CHECKING:
    from localai.api.app import App

MAX_IMAGES = 10  # OpenAI's limit for n
MAX_PROMPT_CHARS = 8000
RESPONSE_FORMATS = ("url", "b64_json")
_SIZE = re.compile(r"^\s*(\d{1,5})\s*x\s*(\d{1,5})\s*$")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")


def images_dir(app: "App") -> Path:
    return Path(app.settings.generated_images_path or Path(app.settings.models_path) / "generated-images")


def parse_size(value: Any) -> tuple[int, int]:
    """(width, height) of LocalAI's "WxH"; a value without "x" means 512x512, as in LocalAI."""
    if value is None:
        return 512, 512
    if not isinstance(value, str):
        raise bad_request("'size' must be a string like \"256x256\".", param="size")
    if "x" not in value:
        return 512, 512
    match = _SIZE.match(value)
    if not match:
        raise bad_request(f"Invalid size {value!r}: expected \"WIDTHxHEIGHT\", e.g. \"512x512\".", param="size")
    return int(match.group(1)), int(match.group(2))


def _optional_int(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{name}' must be an integer.", param=name)
    return value


def _image_model(app: "App", body: dict, request: Request) -> ModelConfig:
    """The requested model, else the first configured stablediffusion model."""
    name = body.get("model")
    if name is not None and not isinstance(name, str):
        raise bad_request("'model' must be a string.", param="model")
    if name:
        config = app.manager.resolve(name)
    else:
        bearer = app.model_from_bearer(request)
        configs = app.manager.configs
        if bearer and configs.get(bearer) is not None and configs[bearer].backend == "stablediffusion":
            config = configs[bearer]
        else:
            config = next((c for c in configs.values() if c.backend == "stablediffusion"), None)
        if config is None:
            raise bad_request("No image generation model is configured: add a model YAML with "
                              "`backend: stablediffusion` (see the README's \"Image generation\" section).",
                              param="model", code="model_not_found")
    if config.backend != "stablediffusion":
        raise bad_request(f"The model `{config.name}` (backend {config.backend}) does not generate images.",
                          param="model")
    return config


def _png(pixels) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")  # uint8 (H, W, 3): RGB
    return buffer.getvalue()


def _save(folder: Path, png: bytes) -> str:
    """Write a PNG under a fresh random name (temp file + rename); returns the name."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".b64", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(png)
        os.chmod(tmp, 0o644)  # an ordinary file, not mkstemp's 0600
        name = Path(tmp).name[1:-len(".tmp")] + ".png"  # "b64XXXXXXXX.png", LocalAI's naming
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return name


def generations(app: "App", request: Request) -> Response:
    from localai.api.app import json_response, read_json

    body = read_json(request)
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    stablediffusion.require()  # 501 with how to enable it, before anything else is looked at

    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad_request("'prompt' must be a non-empty string.", param="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise bad_request(f"'prompt' is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS} are allowed.",
                          param="prompt")
    n = _optional_int(body, "n")
    n = 1 if n is None else n
    if not 1 <= n <= MAX_IMAGES:
        raise bad_request(f"'n' must be between 1 and {MAX_IMAGES}.", param="n")
    response_format = body.get("response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise bad_request(f"'response_format' must be one of {', '.join(RESPONSE_FORMATS)}.",
                          param="response_format")
    width, height = parse_size(body.get("size"))
    steps, mode, seed = _optional_int(body, "step"), _optional_int(body, "mode"), _optional_int(body, "seed")

    config = _image_model(app, body, request)
    request.environ["localai.model"] = config.name
    engine = app.manager.engine(config)
    first = engine.request(prompt=prompt, width=width, height=height, steps=steps, mode=mode, seed=seed)

    data = []
    folder = images_dir(app)
    for i in range(n):
        image = engine.generate(first if i == 0 else
                                engine.request(prompt=prompt, width=width, height=height, steps=first.steps,
                                               mode=first.mode, seed=(first.seed + i) & ((1 << 64) - 1)))
        png = _png(image)
        if response_format == "b64_json":
            data.append({"b64_json": base64.b64encode(png).decode("ascii")})
        else:
            name = _save(folder, png)
            data.append({"url": f"{request.host_url.rstrip('/')}/generated-images/{name}"})
    return json_response({"created": int(time.time()), "data": data})


def generated_image(app: "App", request: Request) -> Response:
    """A file written by generations(): only plain files directly inside the images folder."""
    filename = request.environ.get("localai.route_values", {}).get("filename", "")
    if not _FILENAME.match(filename):
        raise NotFound()
    folder = images_dir(app)
    path = folder / filename
    try:
        info = os.lstat(path)  # lstat: a symlink placed in the folder is not followed
    except OSError:
        raise NotFound() from None
    if not stat.S_ISREG(info.st_mode):
        raise NotFound()
    mimetype = "image/png" if filename.endswith(".png") else "application/octet-stream"
    return send_file(str(path), request.environ, mimetype=mimetype, max_age=3600)

