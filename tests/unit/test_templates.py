"""Prompt rendering: HF chat templates in the sandbox, LocalAI Go templates, fallbacks."""

from __future__ import annotations

import pytest

from localai.config import TemplateConfig
from localai.errors import ConfigError, InvalidRequest
from localai.templates import (
    PromptTemplate,
    go_to_jinja,
    render_chat_prompt,
    render_completion_prompt,
    render_edit_prompt,
)

# tokenizer.chat_template of SmolLM2-135M-Instruct, verbatim.
SMOLLM2_TEMPLATE = r"""{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"""

SMOLLM2_DEFAULT_SYSTEM = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
)

# LocalAI's classic chatml example: chatml-block.tmpl as chat_message, chatml.tmpl as chat.
CHATML_BLOCK = """\
<|im_start|>{{if eq .RoleName "assistant"}}assistant{{else if eq .RoleName "system"}}system{{else if eq .RoleName "user"}}user{{end}}
{{if .Content}}{{.Content}}{{end}}
<|im_end|>"""
CHATML_CHAT = "{{.Input}}\n<|im_start|>assistant\n"


def chat(messages, *, model_template=None, template=None, roles=None, system_prompt=None, **kw):
    return render_chat_prompt(
        messages,
        model_template=model_template,
        config_template=template or TemplateConfig(),
        roles=roles or {},
        system_prompt=system_prompt,
        bos_token="<s>",
        eos_token="</s>",
        **kw,
    )


# -- HF chat templates -------------------------------------------------------------------


def test_smollm2_template_known_string():
    prompt = chat([{"role": "user", "content": "What is 2+2?"}], model_template=SMOLLM2_TEMPLATE)
    assert prompt == (
        SMOLLM2_DEFAULT_SYSTEM
        + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        + "<|im_start|>assistant\n"
    )


def test_smollm2_with_system_and_history_no_generation_prompt():
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]
    prompt = chat(messages, model_template=SMOLLM2_TEMPLATE, add_generation_prompt=False)
    assert prompt == (
        "<|im_start|>system\nBe terse.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
    )


def test_config_system_prompt_is_prepended_only_when_missing():
    prompt = chat([{"role": "user", "content": "Hi"}], model_template=SMOLLM2_TEMPLATE,
                  system_prompt="You are a pirate.")
    assert prompt.startswith("<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nHi")
    prompt = chat([{"role": "system", "content": "Mine."}, {"role": "user", "content": "Hi"}],
                  model_template=SMOLLM2_TEMPLATE, system_prompt="You are a pirate.")
    assert "pirate" not in prompt and prompt.startswith("<|im_start|>system\nMine.<|im_end|>")


def test_content_parts_and_null_content():
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "line one"}, {"type": "text", "text": "line two"}]},
        {"role": "assistant", "content": None},
    ]
    prompt = chat(messages, model_template=SMOLLM2_TEMPLATE, add_generation_prompt=False)
    assert "<|im_start|>user\nline one\nline two<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n" in prompt


@pytest.mark.parametrize(
    "part, message",
    [
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
         "image input is not supported by this model"),
        ({"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}},
         "audio input is not supported by this model"),
        ({"type": "hologram"}, "content part type 'hologram' is not supported"),
        ({"type": "text", "text": 3}, "needs a string"),
    ],
)
def test_unsupported_content_parts(part, message):
    messages = [{"role": "user", "content": [{"type": "text", "text": "look"}, part]}]
    with pytest.raises(InvalidRequest, match=message) as info:
        chat(messages, model_template=SMOLLM2_TEMPLATE)
    assert info.value.param == "messages[0].content[1]"


@pytest.mark.parametrize(
    "messages",
    [[{"content": "no role"}], ["just text"], [{"role": "user", "content": 42}], "not a list"],
)
def test_malformed_messages_are_invalid_requests(messages):
    with pytest.raises(InvalidRequest):
        chat(messages, model_template=SMOLLM2_TEMPLATE)


def test_hf_variables_and_helpers():
    template = (
        "{{ bos_token }}{% for m in messages %}{{ m.role }}={{ m.content | trim }};{% endfor %}"
        "{% if tools %}{{ tools | tojson }}{% endif %}"
        "{% if add_generation_prompt %}>{% endif %}{{ eos_token }}"
    )
    tools = [{"type": "function", "function": {"name": "météo", "parameters": {"q": "<x>"}}}]
    prompt = chat([{"role": "user", "content": " hi "}], model_template=template, tools=tools)
    assert prompt == (
        '<s>user=hi;[{"type": "function", "function": {"name": "météo", "parameters": {"q": "<x>"}}}]></s>'
    )


def test_tojson_indent_and_strftime_now():
    rendered = PromptTemplate("{{ x | tojson(indent=2) }}|{{ strftime_now('%Y') | length }}").render(x={"a": 1})
    assert rendered == '{\n  "a": 1\n}|4'


def test_hf_templates_use_trim_blocks_and_loop_controls():
    template = "{% for m in messages %}\n  {% if loop.index > 1 %}{% break %}{% endif %}\n{{ m.content }}\n{% endfor %}"
    prompt = chat([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], model_template=template)
    assert prompt == "a\n"


def test_raise_exception_is_an_invalid_request():
    template = (
        "{% for m in messages %}{% if m.role == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}{% endfor %}"
    )
    with pytest.raises(InvalidRequest, match="^System role not supported$"):
        chat([{"role": "system", "content": "x"}, {"role": "user", "content": "y"}], model_template=template)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{% set _ = messages.append({'role': 'x'}) %}",
    ],
)
def test_sandbox_blocks_unsafe_access(source):
    with pytest.raises(ConfigError, match="^tokenizer.chat_template: blocked by the template sandbox"):
        chat([{"role": "user", "content": "x"}], model_template=source)


@pytest.mark.parametrize(
    "source, match",
    [
        ("{{ undefined_thing.attr }}", "template error: 'undefined_thing' is undefined"),
        ("{{ messages[0]['content'] + 1 }}", "TypeError"),
        ("{% for m in messages %}", "template syntax error on line 1"),
    ],
)
def test_template_errors_are_config_errors_with_the_source_name(source, match):
    with pytest.raises(ConfigError, match=match) as info:
        chat([{"role": "user", "content": "x"}], model_template=source)
    assert str(info.value).startswith("tokenizer.chat_template: ")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_plain_chatml_fallback():
    prompt = chat([{"role": "user", "content": "Hi"}], system_prompt="Sys")
    assert prompt == "<|im_start|>system\nSys<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    prompt = chat([{"role": "user", "content": "Hi"}], add_generation_prompt=False)
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n"


def test_compiled_once_per_text():
    from localai.templates import sandbox as templates

    first = PromptTemplate("{{ x }}-cache-probe")
    second = PromptTemplate("{{ x }}-cache-probe", name="other")
    assert first._template is second._template
    assert templates._compile.cache_info().hits >= 1


# -- LocalAI scheme (YAML templates) -----------------------------------------------------


def test_localai_chatml_block_and_chat_templates():
    template = TemplateConfig(chat=CHATML_CHAT, chat_message=CHATML_BLOCK)
    messages = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "Hi"}]
    prompt = chat(messages, template=template, model_template=SMOLLM2_TEMPLATE)
    assert prompt == (
        "<|im_start|>system\nBe nice.\n<|im_end|>\n"
        "<|im_start|>user\nHi\n<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_use_tokenizer_template_prefers_the_model_template():
    template = TemplateConfig(chat=CHATML_CHAT, chat_message=CHATML_BLOCK, use_tokenizer_template=True)
    prompt = chat([{"role": "user", "content": "Hi"}], template=template, model_template=SMOLLM2_TEMPLATE)
    assert prompt.startswith(SMOLLM2_DEFAULT_SYSTEM)


def test_localai_gpt4all_roles_without_chat_message():
    template = TemplateConfig(
        chat="The prompt below is a question.\n### Prompt:\n{{.Input}}\n### Response:\n"
    )
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]
    prompt = chat(messages, template=template, roles={"user": "USER: ", "system": "SYS: "})
    assert prompt == "The prompt below is a question.\n### Prompt:\nUSER: Hi\nHello\nUSER: Bye\n### Response:\n"


def test_localai_message_variables():
    template = TemplateConfig(
        chat_message="{{.MessageIndex}}|{{.RoleName}}|{{.Role}}|{{.Content}}|{{.LastMessage}}|{{.FunctionName}}"
    )
    messages = [{"role": "user", "content": "a"}, {"role": "tool", "content": "42", "name": "calc"}]
    prompt = chat(messages, template=template, roles={"user": "### User:"})
    # As in LocalAI: RoleName is the request's role, Role its mapping in `roles:` ("" if none).
    assert prompt == "0|user|### User:|a|false|\n1|tool||42|true|calc"


def test_localai_blank_messages_are_dropped_and_tool_calls_exposed():
    template = TemplateConfig(
        chat_message='{{if ne .RoleName "system"}}{{.RoleName}}:{{.Content}}'
        "{{if .FunctionCall}}{{toJson .FunctionCall}}{{end}}{{end}}"
    )
    call = [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    messages = [
        {"role": "system", "content": "hidden"},
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": call},
    ]
    prompt = chat(messages, template=template)
    assert prompt == 'user:go\nassistant:[{"id":"1","type":"function","function":{"name":"f","arguments":"{}"}}]'


def test_localai_system_prompt_placed_by_template_or_prepended():
    placed = TemplateConfig(chat="{{if not .SuppressSystemPrompt}}[{{.SystemPrompt}}]{{end}}{{.Input}}")
    assert chat([{"role": "user", "content": "u"}], template=placed, system_prompt="S") == "[S]u"
    assert chat([{"role": "system", "content": "mine"}, {"role": "user", "content": "u"}],
                template=placed, system_prompt="S") == "mine\nu"  # SuppressSystemPrompt
    not_placed = TemplateConfig(chat_message="{{.RoleName}}: {{.Content}}")
    assert chat([{"role": "user", "content": "u"}], template=not_placed, system_prompt="S") == "system: S\nuser: u"


def test_localai_range_over_messages_and_functions():
    template = TemplateConfig(
        chat=(
            "{{range .Functions}}<fn name={{.Name}}>{{toJson .Parameters}}</fn>\n{{end}}"
            "{{- range $i, $m := .Messages}}{{if $i}} {{end}}{{$i}}:{{$m.RoleName}}{{end}}"
        )
    )
    tools = [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert chat(messages, template=template, tools=tools) == '<fn name=get>{"type":"object"}</fn>\n0:user 1:assistant'


def test_localai_template_error_names_the_template():
    template = TemplateConfig(chat_message="{{with .Content}}{{.}}{{end}}")
    with pytest.raises(ConfigError, match=r"^template.chat_message: line 1: unsupported Go template construct: \{\{with\}\}"):
        chat([{"role": "user", "content": "x"}], template=template)


# -- completion / edit -------------------------------------------------------------------


def test_completion_prompt():
    assert render_completion_prompt("2+2=", None) == "2+2="
    assert render_completion_prompt("2+2=", "Q: {{.Input}}\nA:") == "Q: 2+2=\nA:"
    # A .tmpl file's trailing newline is part of the prompt, as in Go.
    assert render_completion_prompt("x", "{{.Input}}\n") == "x\n"


def test_edit_prompt():
    assert render_edit_prompt("Fix it", "teh cat", "{{.Instruction}} => {{.Input}}") == "Fix it => teh cat"
    default = render_edit_prompt("Fix the spelling", "teh cat", None)
    assert "### Instruction:\nFix the spelling\n" in default
    assert "### Input:\nteh cat\n" in default
    assert default.endswith("### Response:\n")
    assert "### Input" not in render_edit_prompt("Write a haiku", "", None)


# -- go_to_jinja known answers ---------------------------------------------------------


@pytest.mark.parametrize(
    "go, jinja",
    [
        ("{{.Input}}", "{{ Input }}"),
        ("{{ .Input }}", "{{ Input }}"),
        ("A {{- .Input -}} \n B", "A{{ Input }}B"),
        ("A\n  {{- .Input}}  \n", "A{{ Input }}  \n"),
        ('{{if eq .RoleName "user"}}U{{else if eq .RoleName "system"}}S{{else}}A{{end}}',
         "{% if (RoleName == 'user') %}U{% elif (RoleName == 'system') %}S{% else %}A{% endif %}"),
        ("{{if .System}}{{.System}}{{end}}", "{% if System %}{{ System }}{% endif %}"),
        ('{{ if ne .Role "x" }}y{{ end }}', "{% if (Role != 'x') %}y{% endif %}"),
        ('{{if and .A (or .B (not .C))}}z{{end}}', "{% if (A and (B or (not C))) %}z{% endif %}"),
        ('{{if eq .MessageIndex 0 1}}first{{end}}', "{% if (MessageIndex == 0 or MessageIndex == 1) %}first{% endif %}"),
        ("{{range .Messages}}{{.Content}}{{end}}",
         "{% for go_key_1, go_dot_1 in go_range(Messages) %}{{ go_field(go_dot_1, 'Content') }}{% endfor %}"),
        ("{{range .Messages}}{{range .Parts}}{{.}}{{end}}{{end}}",
         "{% for go_key_1, go_dot_1 in go_range(Messages) %}"
         "{% for go_key_2, go_dot_2 in go_range(go_field(go_dot_1, 'Parts')) %}{{ go_dot_2 }}{% endfor %}"
         "{% endfor %}"),
        ("{{/* a comment */}}x", "x"),
        ("{{toJson .Functions}}", "{{ (Functions | go_tojson) }}"),
        ("{{ .Input | len }}", "{{ (Input | length) }}"),
        ("{{.A.B}}", "{{ go_field(A, 'B') }}"),
        ("literal {% and {# stay", "literal {{ '{' }}% and {{ '{' }}# stay"),
    ],
)
def test_go_to_jinja_known_answers(go, jinja):
    assert go_to_jinja(go) == jinja


def test_go_nested_if_and_range_with_trim_markers_render():
    source = """\
{{- range $i, $m := .Messages }}
{{- if eq $m.RoleName "user" }}
[U{{ $i }}] {{ $m.Content }}
{{- else if eq $m.RoleName "assistant" }}
[A] {{ if $m.Content }}{{ $m.Content }}{{ else }}(empty){{ end }}
{{- else }}
[?] {{ $.Input }}
{{- end }}
{{- end }}
"""
    rendered = PromptTemplate(source, syntax="go").render(
        Input="in",
        Messages=[
            {"RoleName": "user", "Content": "hi"},
            {"RoleName": "assistant", "Content": ""},
            {"RoleName": "tool", "Content": "x"},
        ],
    )
    assert rendered == "\n[U0] hi\n[A] (empty)\n[?] in\n"


def test_go_range_else_and_break():
    source = "{{range .L}}{{if eq . 3}}{{break}}{{end}}{{.}},{{else}}none{{end}}"
    template = PromptTemplate(source, syntax="go")
    assert template.render(L=[1, 2, 3, 4]) == "1,2,"
    assert template.render(L=[]) == "none"
    assert template.render() == "none"


def test_go_values_print_like_go():
    template = PromptTemplate("{{.T}} {{.F}} {{.N}} [{{.Missing}}] {{.M.x}}", syntax="go")
    assert template.render(T=True, F=False, N=None, M={"x": 1}) == "true false  [] 1"


def test_go_string_escapes_and_raw_strings():
    template = PromptTemplate('{{if eq .X "a\\"b\\n"}}1{{end}}{{if eq .Y `c\\d`}}2{{end}}', syntax="go")
    assert template.render(X='a"b\n', Y="c\\d") == "12"


@pytest.mark.parametrize(
    "go, construct",
    [
        ("{{with .X}}{{end}}", "{{with}}"),
        ('{{define "x"}}{{end}}', "{{define}}"),
        ('{{template "x"}}', "{{template}}"),
        ('{{printf "%s" .X}}', "'printf'"),
        ("{{ $x := .Input }}", "variable declaration"),
        ("{{ $x = .Input }}", "variable assignment"),
        ("{{.}}", "'.' outside {{range}}"),
        ("{{ $nope }}", "undefined variable $nope"),
        ("{{if .X}}", "{{if}} is never closed"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{if .X}}{{else}}{{else}}{{end}}", "unexpected {{else}}"),
        ("{{.Input", "unclosed action"),
        ("{{ 'c' }}", "character constant"),
        ("{{ .Content .X }}", "arguments after a non-function"),
        ("{{break}}", "outside {{range}}"),
        ("{{ eq .X }}", "eq takes at least 2 arguments"),
    ],
)
def test_go_unsupported_constructs_raise_config_error(go, construct):
    with pytest.raises(ConfigError) as info:
        go_to_jinja(go)
    assert construct in str(info.value)
