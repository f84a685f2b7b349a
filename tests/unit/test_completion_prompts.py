"""Pure helpers of /v1/completions: OpenAI's prompt forms and fill-in-the-middle prompts."""

from __future__ import annotations

import pytest

from localai.api.routes.completions import batched_prompts
from localai.backends.llama.text import fim_prompt


@pytest.mark.parametrize("prompt, expected", [
    ("hi", ["hi"]),
    (["a", "b"], ["a", "b"]),
    ([1, 2, 3], [[1, 2, 3]]),  # one prompt given as token ids
    ([[1, 2], [3]], [[1, 2], [3]]),  # a batch of token-id prompts
])
def test_every_openai_prompt_form_becomes_a_list_of_prompts(prompt, expected):
    assert batched_prompts(prompt) == expected


def test_fim_prompt_is_prefix_suffix_middle():
    assert fim_prompt([10, 11], [20], (1, 2, 3)) == [1, 10, 11, 2, 20, 3]
    assert fim_prompt([], [], (1, 2, 3)) == [1, 2, 3]
