"""What every embedding backend shares: input checks before any work is done, and the JSON
text of the vectors."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from localai.errors import ContextLengthExceeded, InvalidRequest


# Tokens of one request, all inputs together (OpenAI's limit): bounds the work one call can ask.
MAX_REQUEST_TOKENS = 300_000


def check_token_lists(tokens: Sequence[Sequence[int]], n_vocab: int, max_tokens: int) -> None:
    """Refuse empty inputs, inputs over the context, requests over MAX_REQUEST_TOKENS and
    unknown token ids (before any work)."""
    total = sum(len(ids) for ids in tokens)
    if total > MAX_REQUEST_TOKENS:
        raise InvalidRequest(f"The inputs have {total} tokens together; at most {MAX_REQUEST_TOKENS} are embedded "
                             "per request.", param="input")
    for i, ids in enumerate(tokens):
        if len(ids) == 0:
            raise InvalidRequest(f"input[{i}] is empty; every input must contain at least one token.",
                                 param="input")
        if len(ids) > max_tokens:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {max_tokens} tokens, however input[{i}] has "
                f"{len(ids)} tokens. Please reduce the length of the input.", param="input")
        for t in ids:
            if type(t) is not int or not 0 <= t < n_vocab:
                raise InvalidRequest(f"input[{i}] has token id {t!r}, outside the vocabulary (0..{n_vocab - 1}).",
                                     param="input")


def vectors_json(vectors: np.ndarray) -> list[str]:
    """Each row as JSON array text, with enough digits to read back the same float32."""
    from localai.bindings.bert import rows_to_json  # formats in C, twice as fast as json.dumps

    return rows_to_json(vectors)
