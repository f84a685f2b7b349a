"""LocalAI model YAML files: parsing, validation, and loading a models folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from localai.config import (
    ModelConfig,
    Parameters,
    TemplateConfig,
    load_model_configs,
    parse_model_config,
)
from localai.errors import ConfigError


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def touch_model(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(b"GGUF\x03\x00\x00\x00")
    return path


GPT4ALL_J = """\
    name: gpt-3.5-turbo
    parameters:
      model: ggml-gpt4all-j
      top_k: 80
      temperature: 0.2
      top_p: 0.7
    context_size: 1024
    stopwords:
    - "HUMAN:"
    - "GPT:"
    roles:
      user: " "
      system: " "
    template:
      completion: completion
      chat: gpt4all
    """

GPT4ALL_TMPL = """\
The prompt below is a question to answer, a task to complete, or a conversation to respond to; decide which and write an appropriate response.
### Prompt:
{{.Input}}
### Response:
"""


# -- parse_model_config -----------------------------------------------------------------


def test_parse_minimal_defaults():
    config = parse_model_config({"name": "tiny"})
    assert config == ModelConfig(name="tiny")
    assert config.backend == "llama"
    assert config.parameters == Parameters()
    assert config.template == TemplateConfig()
    assert (config.mmap, config.mlock, config.embeddings) == (True, False, False)
    assert config.stopwords == [] and config.roles == {} and config.extra == {}


def test_parse_full_config_and_number_normalisation():
    config = parse_model_config(
        {
            "name": "m",
            "backend": "llama",
            "parameters": {
                "model": "m.gguf",
                "temperature": 1,  # YAML int where a float is meant
                "top_k": 40,
                "max_tokens": 128.0,  # a float holding an integer is accepted as int
                "seed": -1,
                "ignore_eos": True,
                "min_p": 0.05,
            },
            "context_size": 2048,
            "threads": 4,
            "f16": True,
            "mmap": False,
            "embeddings": True,
            "template": {"chat": "{{.Input}}", "use_tokenizer_template": True},
            "stopwords": ["<|im_end|>"],
            "roles": {"user": "USER:", "assistant": None},
            "system_prompt": "Be brief.",
            "trimspace": ["A"],
            "cutstrings": ["B"],
            "parallel": 2,
            "description": "desc",
        },
        source=Path("/models/m.yaml"),
    )
    p = config.parameters
    assert p.temperature == 1.0 and isinstance(p.temperature, float)
    assert p.max_tokens == 128 and isinstance(p.max_tokens, int)
    assert (p.top_k, p.seed, p.ignore_eos, p.min_p, p.top_p) == (40, -1, True, 0.05, None)
    assert (config.context_size, config.threads, config.parallel) == (2048, 4, 2)
    assert (config.extra["f16"], config.mmap, config.embeddings) == (True, False, True)  # kept, unused
    assert config.template.chat == "{{.Input}}" and config.template.use_tokenizer_template
    assert config.roles == {"user": "USER:", "assistant": ""}
    assert config.system_prompt == "Be brief."
    assert config.source == Path("/models/m.yaml")


def test_gpu_layers_is_known_and_used_only_with_rpc_workers():
    config = parse_model_config({"name": "m", "gpu_layers": 99, "parameters": {"model": "m.gguf"}})
    assert config.gpu_layers == 99 and config.rpc_workers == [] and "gpu_layers" not in config.extra


def test_unknown_keys_are_kept_in_extra():
    config = parse_model_config(
        {
            "name": "m",
            "mmproj": "vision.gguf",
            "known_usecases": ["chat"],
            "parameters": {"model": "m.gguf", "mirostat": 2},
            "template": {"chat": "x", "join_chat_messages_by_character": ""},
        }
    )
    assert config.extra == {
        "mmproj": "vision.gguf",
        "known_usecases": ["chat"],
        "parameters": {"mirostat": 2},
        "template": {"join_chat_messages_by_character": ""},
    }


def test_null_values_mean_not_set():
    config = parse_model_config(
        {"name": "m", "parameters": None, "template": None, "mmap": None, "stopwords": None,
         "context_size": 0, "threads": None}
    )
    assert config.parameters == Parameters()
    assert config.mmap is True and config.stopwords == []
    assert config.context_size is None and config.threads is None


@pytest.mark.parametrize(
    "data, key",
    [
        ({"name": "m", "parameters": {"temperature": "hot"}}, "parameters.temperature"),
        ({"name": "m", "parameters": {"temperature": True}}, "parameters.temperature"),
        ({"name": "m", "parameters": {"top_k": 1.5}}, "parameters.top_k"),
        ({"name": "m", "parameters": {"ignore_eos": "yes please"}}, "parameters.ignore_eos"),
        ({"name": "m", "parameters": "m.gguf"}, "parameters"),
        ({"name": "m", "context_size": "big"}, "context_size"),
        ({"name": "m", "threads": -2}, "threads"),
        ({"name": "m", "stopwords": "END"}, "stopwords"),
        ({"name": "m", "stopwords": ["ok", 3]}, "stopwords[1]"),
        ({"name": "m", "roles": {"user": 1}}, "roles.user"),
        ({"name": "m", "template": {"chat": ["x"]}}, "template.chat"),
        ({"name": "m", "mmap": "no"}, "mmap"),
        ({"name": 12}, "name"),
        ({"name": "  "}, "name"),
        ({"backend": "llama"}, "name"),
    ],
)
def test_wrong_types_name_the_file_and_key(data, key):
    with pytest.raises(ConfigError) as info:
        parse_model_config(data, source=Path("/models/bad.yaml"))
    message = str(info.value)
    assert message.startswith(f"bad.yaml: {key}: "), message


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_model_config(["name", "x"])  # type: ignore[arg-type]


def test_non_string_yaml_keys_are_refused():
    with pytest.raises(ConfigError, match="roles: key 1 is not a string"):
        parse_model_config({"name": "m", "roles": {1: "x"}})


# -- model_path ---------------------------------------------------------------------------


def test_model_path_inside_models_folder(tmp_path):
    config = ModelConfig(name="m", parameters=Parameters(model="sub/m.gguf"))
    assert config.model_path(tmp_path) == tmp_path / "sub" / "m.gguf"
    assert ModelConfig(name="m").model_path(tmp_path) is None


@pytest.mark.parametrize(
    "model",
    ["/etc/passwd", "../secret.gguf", "sub/../../x.gguf", "..", "C:\\models\\x.gguf",
     "..\\x.gguf", "", "https://example.com/x.gguf"],
)
def test_model_path_refuses_escapes(tmp_path, model):
    config = ModelConfig(name="m", parameters=Parameters(model=model))
    with pytest.raises(ConfigError, match="m: parameters.model"):
        config.model_path(tmp_path)


# -- load_model_configs -------------------------------------------------------------------


def test_gpt4all_j_example_with_template_files(tmp_path):
    write(tmp_path, "gpt-3.5-turbo.yaml", GPT4ALL_J)
    write(tmp_path, "gpt4all.tmpl", GPT4ALL_TMPL)
    write(tmp_path, "completion.tmpl", "{{.Input}}")
    (tmp_path / "ggml-gpt4all-j").write_bytes(b"\0")

    configs, errors = load_model_configs(tmp_path)

    assert errors == []
    assert list(configs) == ["gpt-3.5-turbo"]
    config = configs["gpt-3.5-turbo"]
    assert config.source == tmp_path / "gpt-3.5-turbo.yaml"
    assert config.parameters == Parameters(model="ggml-gpt4all-j", top_k=80, temperature=0.2, top_p=0.7)
    assert config.context_size == 1024
    assert config.stopwords == ["HUMAN:", "GPT:"]
    assert config.roles == {"user": " ", "system": " "}
    # Template names were replaced by the text of <name>.tmpl.
    assert config.template.chat == GPT4ALL_TMPL
    assert config.template.completion == "{{.Input}}"
    assert config.model_path(tmp_path) == tmp_path / "ggml-gpt4all-j"


def test_chatml_tmpl_file_and_inline_template(tmp_path):
    write(tmp_path, "chatml.tmpl", "{{.Input}}\n<|im_start|>assistant\n")
    write(
        tmp_path,
        "a.yaml",
        """\
        name: from-file
        parameters: {model: a.gguf}
        template:
          chat: chatml
          chat_message: |
            <|im_start|>{{ .RoleName }}
            {{.Content}}<|im_end|>
          completion: no-such-file
        """,
    )
    touch_model(tmp_path, "a.gguf")
    configs, errors = load_model_configs(tmp_path)
    assert errors == []
    template = configs["from-file"].template
    assert template.chat == "{{.Input}}\n<|im_start|>assistant\n"
    assert template.chat_message == "<|im_start|>{{ .RoleName }}\n{{.Content}}<|im_end|>\n"
    assert template.completion == "no-such-file"  # no such .tmpl: inline text


def test_template_value_never_reads_outside_models_folder(tmp_path):
    models = tmp_path / "models"
    (models / "templates").mkdir(parents=True)
    write(tmp_path, "secret.tmpl", "SECRET")
    write(models / "templates", "inner.tmpl", "INNER {{.Input}}")
    write(
        models,
        "a.yaml",
        f"""\
        name: a
        template:
          chat: ../secret
          completion: {tmp_path}/secret
          edit: templates/inner
          chat_message: "{'x' * 400} {{{{.Content}}}}"
        """,
    )
    configs, errors = load_model_configs(models)
    assert errors == []
    template = configs["a"].template
    assert template.chat == "../secret"
    assert template.completion == f"{tmp_path}/secret"
    assert template.edit == "INNER {{.Input}}"  # a subfolder of the models folder is fine
    assert template.chat_message == "x" * 400 + " {{.Content}}"  # too long for a file name


def test_list_of_configs_in_one_file(tmp_path):
    write(
        tmp_path,
        "models.yaml",
        """\
        - name: first
          parameters: {model: one.gguf}
        - name: second
          parameters: {model: two.gguf, temperature: 0.1}
          embeddings: true
        """,
    )
    configs, errors = load_model_configs(tmp_path)
    assert errors == []
    assert list(configs) == ["first", "second"]
    assert configs["second"].embeddings and configs["second"].parameters.temperature == 0.1
    assert configs["first"].source == tmp_path / "models.yaml"


def test_broken_files_are_skipped_and_reported(tmp_path):
    write(tmp_path, "a-good.yaml", "name: good\nparameters: {model: good.gguf}\n")
    write(tmp_path, "b-syntax.yaml", "name: [unclosed\n")
    write(tmp_path, "c-types.yml", "name: typed\nparameters:\n  temperature: hot\n")
    write(tmp_path, "d-noname.yaml", "parameters: {model: x.gguf}\n")
    write(tmp_path, "e-empty.yaml", "# nothing here\n")
    write(tmp_path, "f-scalar.yaml", "just a string\n")
    write(tmp_path, "g-list.yaml", "- name: listed\n- {name: 3}\n")
    write(tmp_path, "z-good.yaml", "name: also-good\n")

    configs, errors = load_model_configs(tmp_path)

    assert list(configs) == ["good", "listed", "also-good"]
    assert len(errors) == 6, errors
    by_file = {e.split(":", 1)[0]: e for e in errors}
    assert set(by_file) == {
        "b-syntax.yaml", "c-types.yml", "d-noname.yaml", "e-empty.yaml", "f-scalar.yaml", "g-list.yaml",
    }
    assert "invalid YAML" in by_file["b-syntax.yaml"] and "line" in by_file["b-syntax.yaml"]
    assert by_file["c-types.yml"].startswith("c-types.yml: parameters.temperature: expected a number, got string 'hot'")
    assert by_file["d-noname.yaml"] == "d-noname.yaml: name: is required"
    assert "empty" in by_file["e-empty.yaml"]
    assert "expected a mapping" in by_file["f-scalar.yaml"]
    assert by_file["g-list.yaml"].startswith("g-list.yaml: entry 1: name: expected a string")


def test_bare_gguf_is_served_under_its_file_name(tmp_path):
    touch_model(tmp_path, "SmolLM2-135M-Instruct.Q4_1.gguf")
    touch_model(tmp_path, "configured.Q8_0.gguf")
    write(tmp_path, "configured.yaml", "name: configured\nparameters:\n  model: configured.Q8_0.gguf\n")

    configs, errors = load_model_configs(tmp_path)

    assert errors == []
    assert list(configs) == ["configured", "SmolLM2-135M-Instruct.Q4_1.gguf"]
    bare = configs["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert bare.backend == "llama"
    assert bare.parameters == Parameters(model="SmolLM2-135M-Instruct.Q4_1.gguf")
    assert bare.template == TemplateConfig()
    assert bare.source == tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert bare.model_path(tmp_path) == tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_model_referenced_by_a_broken_yaml_is_not_served_bare(tmp_path):
    touch_model(tmp_path, "m.gguf")
    write(tmp_path, "m.yaml", "name: m\nparameters:\n  model: ./m.gguf\n  temperature: hot\n")
    configs, errors = load_model_configs(tmp_path)
    assert configs == {}
    assert len(errors) == 1 and errors[0].startswith("m.yaml: parameters.temperature")


def test_shards_and_projectors_are_not_bare_models(tmp_path):
    for name in [
        "big-00001-of-00002.gguf", "big-00002-of-00002.gguf", "mmproj-model-f16.gguf",
        "llava-mmproj-f16.gguf", ".hidden.gguf", "notes.txt", "partial.gguf.partial",
    ]:
        touch_model(tmp_path, name)
    (tmp_path / "dir.gguf").mkdir()
    configs, errors = load_model_configs(tmp_path)
    assert errors == []
    assert list(configs) == ["big-00001-of-00002.gguf"]


def test_duplicate_names_first_wins(tmp_path):
    write(tmp_path, "a.yaml", "name: twin\nparameters: {model: a.gguf}\n")
    write(tmp_path, "b.yaml", "name: twin\nparameters: {model: b.gguf}\n")
    configs, errors = load_model_configs(tmp_path)
    assert configs["twin"].parameters.model == "a.gguf"
    assert len(errors) == 1
    assert errors[0].startswith("b.yaml: ") and "'twin'" in errors[0] and "a.yaml" in errors[0]


def test_duplicate_names_inside_a_list_file(tmp_path):
    write(tmp_path, "many.yaml", "- {name: twin, threads: 1}\n- {name: twin, threads: 2}\n")
    configs, errors = load_model_configs(tmp_path)
    assert configs["twin"].threads == 1
    assert errors == [
        "many.yaml: entry 1: model name 'twin' is already defined by many.yaml (entry 0); this one is skipped"
    ]


def test_bare_model_does_not_shadow_a_yaml_name(tmp_path):
    touch_model(tmp_path, "x.gguf")
    write(tmp_path, "other.yaml", "name: x.gguf\nparameters: {model: y.gguf}\n")
    configs, errors = load_model_configs(tmp_path)
    assert configs["x.gguf"].parameters.model == "y.gguf"
    assert len(errors) == 1 and errors[0].startswith("x.gguf: ")


def test_path_escape_is_reported_at_load(tmp_path):
    write(tmp_path, "evil.yaml", "name: evil\nparameters: {model: ../../etc/passwd}\n")
    write(tmp_path, "abs.yaml", "name: abs\nparameters: {model: /etc/passwd}\n")
    write(tmp_path, "ok.yaml", "name: ok\n")
    configs, errors = load_model_configs(tmp_path)
    assert list(configs) == ["ok"]
    assert sorted(e.split(":", 1)[0] for e in errors) == ["abs.yaml", "evil.yaml"]
    assert all("outside the models folder" in e for e in errors)


def test_order_is_deterministic_by_file_name(tmp_path):
    for file_name, model_name in [("c.yaml", "zeta"), ("a.yml", "omega"), ("b.yaml", "alpha")]:
        write(tmp_path, file_name, f"name: {model_name}\n")
    touch_model(tmp_path, "b.gguf")
    touch_model(tmp_path, "a.gguf")
    configs, _ = load_model_configs(tmp_path)
    assert list(configs) == ["omega", "alpha", "zeta", "a.gguf", "b.gguf"]


def test_hidden_and_other_files_are_ignored(tmp_path):
    write(tmp_path, ".swap.yaml", "name: [broken\n")
    write(tmp_path, "readme.md", "name: nope\n")
    (tmp_path / "sub.yaml").mkdir()
    configs, errors = load_model_configs(tmp_path)
    assert configs == {} and errors == []


def test_model_sidecar_tmpl_is_the_default_template(tmp_path):
    touch_model(tmp_path, "m.gguf")
    write(tmp_path, "m.gguf.tmpl", "Q: {{.Input}}\nA:")
    configs, errors = load_model_configs(tmp_path)
    assert errors == []
    assert configs["m.gguf"].template.chat == "Q: {{.Input}}\nA:"
    assert configs["m.gguf"].template.completion == "Q: {{.Input}}\nA:"


def test_missing_models_folder_is_an_error_not_an_exception(tmp_path):
    configs, errors = load_model_configs(tmp_path / "absent")
    assert configs == {} and len(errors) == 1 and "cannot list" in errors[0]


def test_non_utf8_yaml_is_reported(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"name: \xff\xfe\n")
    configs, errors = load_model_configs(tmp_path)
    assert configs == {} and errors == ["bin.yaml: not UTF-8 text"]


def test_every_transcription_field_is_read_from_the_yaml():
    from dataclasses import fields

    from localai.config import _TRANSCRIPTION_KEYS, TranscriptionConfig

    assert set(_TRANSCRIPTION_KEYS) == {f.name for f in fields(TranscriptionConfig)}
    config = parse_model_config({"name": "w", "backend": "whisper", "beam_size": 2, "best_of": 3,
                                 "temperature_increment": 1, "entropy_threshold": 2, "logprob_threshold": -1,
                                 "no_speech_threshold": 0.5})
    assert config.transcription == TranscriptionConfig(2, 3, 1.0, 2.0, -1.0, 0.5)
    assert isinstance(config.transcription.temperature_increment, float)
