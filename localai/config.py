"""LocalAI model configuration files: the YAML files (and bare model files) in the models folder.

A LocalAI models folder holds ``*.yaml`` files, each describing one model (or a list of
them), next to the model files and ``*.tmpl`` prompt templates they refer to. LocalAI
YAMLs carry many fields this server does not use; those are kept in ``ModelConfig.extra``
rather than rejected, so a folder prepared for LocalAI loads unchanged.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import yaml

from localai.errors import ConfigError, ConfigKeyError
from localai.files import safe_join
from localai.sampling import KNOBS

__all__ = [
    "Parameters",
    "TemplateConfig",
    "ModelConfig",
    "parse_model_config",
    "load_model_configs",
    "resolve_model_file",
]

CONFIG_SUFFIXES = (".yaml", ".yml")
MODEL_SUFFIXES = (".gguf",)
TEMPLATE_SUFFIX = ".tmpl"
TEMPLATE_KINDS = ("chat", "chat_message", "completion", "edit")


def _parameters_class() -> type:
    """LocalAI's ``parameters:`` block: the model file, and defaults for requests that leave a
    field out (every sampling knob of ``localai.sampling``, plus max_tokens and ignore_eos).
    None everywhere means "not set in the YAML"."""
    fields_ = [("model", "str | None", field(default=None)),
               ("max_tokens", "int | None", field(default=None)),
               ("ignore_eos", "bool | None", field(default=None))]
    fields_ += [(knob.name, f"{knob.kind.__name__} | None", field(default=None)) for knob in KNOBS]
    cls = make_dataclass("Parameters", fields_)
    cls.__module__ = __name__
    cls.__doc__ = _parameters_class.__doc__
    return cls


Parameters = _parameters_class()
# parameters that are numbers, and the type each is converted to
_NUMERIC_PARAMS: dict[str, type] = {"max_tokens": int, **{knob.name: knob.kind for knob in KNOBS}}


@dataclass
class TemplateConfig:
    """Prompt templates (LocalAI Go-template syntax), already resolved from ``*.tmpl`` files."""

    chat: str | None = None
    chat_message: str | None = None
    completion: str | None = None
    edit: str | None = None
    use_tokenizer_template: bool = False


@dataclass(frozen=True)
class TranscriptionConfig:
    """How the whisper backend decodes (top-level YAML keys); None: whisper-cli's default."""

    beam_size: int | None = None  # 1: greedy
    best_of: int | None = None
    temperature_increment: float | None = None  # 0: no fallback on failed windows
    entropy_threshold: float | None = None  # whisper.cpp's stand-in for the compression-ratio threshold
    logprob_threshold: float | None = None
    no_speech_threshold: float | None = None


@dataclass
class ModelConfig:
    name: str
    backend: str = "llama"
    parameters: Parameters = field(default_factory=Parameters)
    context_size: int | None = None
    threads: int | None = None
    mmap: bool = True
    mlock: bool = False
    embeddings: bool = False
    template: TemplateConfig = field(default_factory=TemplateConfig)
    stopwords: list[str] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)
    system_prompt: str | None = None
    trimspace: list[str] = field(default_factory=list)
    cutstrings: list[str] = field(default_factory=list)
    parallel: int | None = None
    asset_dir: str | None = None
    description: str | None = None
    transcription: TranscriptionConfig = field(default_factory=TranscriptionConfig)
    rpc_workers: list[str] = field(default_factory=list)  # ggml RPC servers "host:port" holding layers
    gpu_layers: int | None = None  # layers on the RPC workers (LocalAI's name); None: by free memory
    tensor_split: list[float] = field(default_factory=list)  # weights: this process, then each worker
    source: Path | None = None
    # Keys we do not interpret. Unknown keys of the `parameters:` and `template:` blocks are
    # kept here too, under extra["parameters"] / extra["template"].
    extra: dict[str, Any] = field(default_factory=dict)

    def model_path(self, models_path: Path) -> Path | None:
        """``parameters.model`` as a path inside ``models_path`` (None when not set).

        Raises ConfigError for a value that would leave the models folder.
        """
        if self.parameters.model is None:
            return None
        return resolve_model_file(
            self.parameters.model, models_path, what=f"{self.name}: parameters.model"
        )


def resolve_model_file(value: str, models_path: Path, *, what: str = "model file") -> Path:
    """``value`` (a path relative to the models folder) joined to ``models_path``; a YAML
    (possibly from a gallery) must not be able to name /etc/passwd or ../../secret
    (``localai.files.safe_join`` says exactly what is refused)."""
    return safe_join(Path(models_path), value, what=what)


# ---------------------------------------------------------------------------------------
# Validation

@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    # Built on first use (and cached) so no schema dict lives at module level. A null value
    # is accepted everywhere and means "not set", as an empty YAML key does in LocalAI.
    number = {"type": ["number", "null"]}
    integer = {"type": ["integer", "null"]}
    count = {"type": ["integer", "null"], "minimum": 0}  # 0 = "use the default", as in LocalAI
    boolean = {"type": ["boolean", "null"]}
    string = {"type": ["string", "null"]}
    strings = {"type": ["array", "null"], "items": {"type": "string"}}
    schema = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": r"\S"},
            "backend": {"type": ["string", "null"], "pattern": r"\S"},
            "parameters": {
                "type": ["object", "null"],
                "properties": {
                    "model": string,
                    "ignore_eos": boolean,
                    **{name: integer if kind is int else number for name, kind in _NUMERIC_PARAMS.items()},
                },
            },
            "context_size": count,
            "threads": count,
            "f16": boolean,
            "mmap": boolean,
            "mlock": boolean,
            "embeddings": boolean,
            "template": {
                "type": ["object", "null"],
                "properties": {
                    "chat": string,
                    "chat_message": string,
                    "completion": string,
                    "edit": string,
                    "use_tokenizer_template": boolean,
                },
            },
            "stopwords": strings,
            "roles": {"type": ["object", "null"], "additionalProperties": string},
            "system_prompt": string,
            "trimspace": strings,
            "cutstrings": strings,
            "parallel": count,
            "asset_dir": string,
            "description": string,
            "beam_size": {"type": ["integer", "null"], "minimum": 1, "maximum": 16},
            "best_of": {"type": ["integer", "null"], "minimum": 1, "maximum": 16},
            "temperature_increment": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "entropy_threshold": number,
            "logprob_threshold": number,
            "no_speech_threshold": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "rpc_workers": {"type": ["array", "string", "null"], "items": {"type": "string"}},
            "gpu_layers": {"type": ["integer", "null"], "minimum": -1},
            "tensor_split": {"type": ["array", "string", "null"], "items": {"type": "number", "minimum": 0}},
        },
    }
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _key_path(path: Any) -> str:
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(f".{part}" if parts else str(part))
    return "".join(parts) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    value = error.instance
    if error.validator == "type":
        types = error.validator_value
        wanted = [_SCHEMA_TYPE_NAMES[t] for t in ([types] if isinstance(types, str) else types) if t != "null"]
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return f"expected {' or '.join(wanted)}, got {_yaml_type(value)} {shown}"
    if error.validator == "required":
        return "is required"
    if error.validator == "pattern":
        return "must not be empty"
    if error.validator == "minimum":
        return f"must be >= {error.validator_value}, got {value!r}"
    return error.message


_SCHEMA_TYPE_NAMES = MappingProxyType({
    "array": "a list", "object": "a mapping", "number": "a number", "integer": "an integer",
    "string": "a string", "boolean": "a boolean",
})


def _yaml_type(value: Any) -> str:
    return {
        bool: "boolean", int: "integer", float: "number", str: "string",
        list: "list", dict: "mapping", type(None): "null",
    }.get(type(value), type(value).__name__)


def _check_keys(data: dict, where: str) -> None:
    # YAML allows non-string keys (`1: x`, `yes: x`); jsonschema would silently ignore them.
    for key in data:
        if not isinstance(key, str):
            raise ConfigKeyError(where or "(top level)", f"key {key!r} is not a string")


def _validate(data: Any) -> None:
    if not isinstance(data, dict):
        raise ConfigKeyError("(top level)", f"expected a mapping, got {_yaml_type(data)}")
    _check_keys(data, "")
    for block in ("parameters", "template", "roles"):
        if isinstance(data.get(block), dict):
            _check_keys(data[block], block)
    errors = list(_validator().iter_errors(data))
    if errors:
        # Report one error, the one the earliest in the file's structure, so the message is
        # stable; a `required` error on the top level comes first.
        error = min(errors, key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]))
        path = list(error.absolute_path)
        if error.validator == "required":
            missing = [k for k in error.validator_value if k not in (error.instance or {})]
            path.append(missing[0] if missing else "?")
        raise ConfigKeyError(_key_path(path), _describe(error))


def _known(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


# the top-level keys of TranscriptionConfig and the type each is converted to
_TRANSCRIPTION_KEYS: dict[str, type] = {"beam_size": int, "best_of": int, "temperature_increment": float,
                                        "entropy_threshold": float, "logprob_threshold": float,
                                        "no_speech_threshold": float}


def _build(data: dict, source: Path | None) -> ModelConfig:
    params_raw = data.get("parameters") or {}
    template_raw = data.get("template") or {}
    extra: dict[str, Any] = {
        k: v for k, v in data.items()
        if (k not in _known(ModelConfig) and k not in _TRANSCRIPTION_KEYS) or k in ("source", "extra", "transcription")
    }
    param_keys = _known(Parameters)
    template_keys = _known(TemplateConfig)
    if unknown := {k: v for k, v in params_raw.items() if k not in param_keys}:
        extra["parameters"] = unknown
    if unknown := {k: v for k, v in template_raw.items() if k not in template_keys}:
        extra["template"] = unknown

    def num(value: Any, kind: type) -> Any:
        # YAML `temperature: 1` is an int, `max_tokens: 1.0` a float: normalise.
        return None if value is None else kind(value)

    params = Parameters(
        model=params_raw.get("model"),
        ignore_eos=params_raw.get("ignore_eos"),
        **{k: num(params_raw.get(k), kind) for k, kind in _NUMERIC_PARAMS.items()},
    )
    template = TemplateConfig(
        **{k: template_raw.get(k) for k in TEMPLATE_KINDS},
        use_tokenizer_template=bool(template_raw.get("use_tokenizer_template") or False),
    )

    def count(key: str) -> int | None:
        value = data.get(key)
        return int(value) if value else None  # None and 0 both mean "default"

    def flag(key: str, default: bool) -> bool:
        value = data.get(key)
        return default if value is None else bool(value)

    return ModelConfig(
        name=data["name"].strip(),
        backend=(data.get("backend") or "llama").strip(),
        parameters=params,
        context_size=count("context_size"),
        threads=count("threads"),
        mmap=flag("mmap", True),
        mlock=flag("mlock", False),
        embeddings=flag("embeddings", False),
        template=template,
        stopwords=list(data.get("stopwords") or []),
        roles={k: ("" if v is None else v) for k, v in (data.get("roles") or {}).items()},
        system_prompt=data.get("system_prompt"),
        trimspace=list(data.get("trimspace") or []),
        cutstrings=list(data.get("cutstrings") or []),
        parallel=count("parallel"),
        asset_dir=data.get("asset_dir"),
        description=data.get("description"),
        transcription=TranscriptionConfig(**{k: num(data.get(k), kind) for k, kind in _TRANSCRIPTION_KEYS.items()}),
        rpc_workers=_endpoints(data.get("rpc_workers")),
        gpu_layers=data.get("gpu_layers"),
        tensor_split=_weights(data.get("tensor_split")),
        source=source,
        extra=extra,
    )


def _endpoints(value: Any) -> list[str]:
    """A list of "host:port", or one comma-separated string of them (LocalAI's env style)."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    return [item.strip() for item in items if item.strip()]


def _weights(value: Any) -> list[float]:
    """LocalAI writes tensor_split as a string ("1,1"); a YAML list works too."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    try:
        return [float(item) for item in items if str(item).strip()]
    except ValueError:
        raise ConfigError(f"tensor_split: expected numbers, got {value!r}") from None


def _source_label(source: Path | None) -> str:
    return source.name if source is not None else "model config"


def parse_model_config(data: dict, *, source: Path | None = None) -> ModelConfig:
    """One LocalAI model config mapping -> ModelConfig.

    Template values are kept as written (file names are resolved by load_model_configs).
    Raises ConfigError "FILE: KEY: reason" on a missing name or a value of the wrong type.
    """
    try:
        _validate(data)
    except ConfigKeyError as exc:
        raise ConfigError(f"{_source_label(source)}: {exc}") from None
    return _build(data, source)


# ---------------------------------------------------------------------------------------
# Loading a models folder


def _read_template_value(value: str, models_path: Path) -> str:
    """LocalAI's rule: ``<models_path>/<value>.tmpl`` if that file exists, else inline text."""
    # Multi-line text, or a value that would point outside the folder, is inline template
    # text and never touches the file system.
    if not value or "\n" in value or "\r" in value or value != value.strip():
        return value
    try:
        path = resolve_model_file(value + TEMPLATE_SUFFIX, models_path)
    except ConfigError:
        return value
    try:
        exists = path.is_file()
    except OSError:  # e.g. a long one-line template is no usable file name
        return value
    if not exists:
        return value
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"template file {path.name} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read template file {path.name}: {exc.strerror or exc}") from None


def _resolve_templates(config: ModelConfig, models_path: Path) -> None:
    tpl = config.template
    for kind in TEMPLATE_KINDS:
        value = getattr(tpl, kind)
        if value is not None:
            try:
                setattr(tpl, kind, _read_template_value(value, models_path))
            except ConfigError as exc:
                raise ConfigError(f"template.{kind}: {exc}") from None
    # LocalAI: a "<model file>.tmpl" next to the model is its default prompt template.
    model = config.parameters.model
    if model and not (tpl.chat or tpl.chat_message or tpl.completion or tpl.edit):
        sidecar = models_path / f"{model}{TEMPLATE_SUFFIX}"
        try:
            text = sidecar.read_text(encoding="utf-8") if sidecar.is_file() else None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read template file {sidecar.name}: {exc}") from None
        if text is not None:
            tpl.chat = tpl.completion = text


def _config_entries(path: Path) -> list[tuple[int | None, Any]]:
    """The config mappings a YAML file holds: (index in the list or None, mapping)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"invalid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError("empty file")
    if isinstance(data, list):
        if not data:
            raise ConfigError("empty list of model configs")
        return list(enumerate(data))
    return [(None, data)]


def _referenced_files(entry: Any) -> list[str]:
    """Model files a (possibly invalid) config mapping points at, best effort."""
    refs: list[str] = []
    if isinstance(entry, dict):
        params = entry.get("parameters")
        if isinstance(params, dict) and isinstance(params.get("model"), str):
            refs.append(params["model"])
        if isinstance(entry.get("mmproj"), str):  # a vision projector is not a model
            refs.append(entry["mmproj"])
    return [os.path.normpath(r) for r in refs]


def _is_bare_model(path: Path) -> bool:
    name = path.name
    if name.startswith(".") or not name.endswith(MODEL_SUFFIXES) or not path.is_file():
        return False
    lower = name.lower()
    # Projectors and non-first shards of a split GGUF cannot be loaded on their own.
    if lower.startswith("mmproj") or "-mmproj" in lower:
        return False
    stem = lower.rsplit(".", 1)[0]
    parts = stem.rsplit("-", 3)
    if len(parts) == 4 and parts[2] == "of" and parts[1].isdigit() and parts[3].isdigit():
        return int(parts[1]) == 1
    return True


def load_model_configs(models_path: Path) -> tuple[dict[str, ModelConfig], list[str]]:
    """Every model in ``models_path``: (configs by name, error strings "FILE: reason").

    YAML files are read in file-name order; a broken file is reported and skipped, the
    rest still load. A ``*.gguf`` no YAML refers to is served under its own file name.
    Configs from YAML come first in the result, then bare model files, each sorted.
    """
    models_path = Path(models_path)
    configs: dict[str, ModelConfig] = {}
    owners: dict[str, str] = {}
    errors: list[str] = []
    referenced: set[str] = set()

    try:
        entries = sorted(models_path.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        return {}, [f"{models_path}: cannot list the models folder: {exc.strerror or exc}"]

    def add(config: ModelConfig, file_name: str, entry: str = "") -> None:
        if config.name in configs:
            errors.append(
                f"{file_name}: {entry}model name {config.name!r} is already defined by "
                f"{owners[config.name]}; this one is skipped"
            )
            return
        configs[config.name] = config
        owners[config.name] = f"{file_name} ({entry.rstrip(': ')})" if entry else file_name

    for path in entries:
        # Hidden files (editor swap files, .keep) are not configs, as in LocalAI.
        if path.name.startswith(".") or not path.name.endswith(CONFIG_SUFFIXES):
            continue
        if not path.is_file():
            continue
        try:
            items = _config_entries(path)
        except ConfigError as exc:
            errors.append(f"{path.name}: {exc}")
            continue
        for index, item in items:
            # Claim its model file even when the entry is broken, so a typo in a YAML does
            # not silently turn its model into a differently configured bare model.
            referenced.update(_referenced_files(item))
            entry = "" if index is None else f"entry {index}: "
            try:
                _validate(item)
            except ConfigKeyError as exc:
                errors.append(f"{path.name}: {entry}{exc}")
                continue
            config = _build(item, path)
            try:
                config.model_path(models_path)
                _resolve_templates(config, models_path)
            except ConfigError as exc:
                errors.append(f"{path.name}: {entry}{exc}")
                continue
            add(config, path.name, entry)

    for path in entries:
        if not _is_bare_model(path) or path.name in referenced:
            continue
        config = ModelConfig(name=path.name, parameters=Parameters(model=path.name), source=path)
        try:
            _resolve_templates(config, models_path)
        except ConfigError as exc:
            errors.append(f"{path.name}: {exc}")
            continue
        add(config, path.name)

    return configs, errors

