"""The pure parts of /v1/embeddings: OpenAI's input forms, ``dimensions``, the encodings."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from localai.api.routes.embeddings import MAX_INPUTS, encode_vectors, parse_input, shorten
from localai.api.http import error_info
from localai.errors import RequestError


@pytest.mark.parametrize("value, expected", [
    ("hello", ["hello"]),
    (["a", "b"], ["a", "b"]),
    ([1, 2, 3], [[1, 2, 3]]),
    ([[1, 2], [3]], [[1, 2], [3]]),
    ([0], [[0]]),
])
def test_accepted_forms(value, expected):
    assert parse_input(value) == expected


@pytest.mark.parametrize("value", [
    None, "", [], [""], ["a", ""], [[]], [[1], []], 3, 1.5, {"a": 1}, ["a", 1], [1, "a"], [[1, "2"]],
    [True], [[False]], [1.0], [[1, 2.5]], [["a"]], [None],
])
def test_refused_forms(value):
    with pytest.raises(RequestError) as info:
        parse_input(value)
    assert error_info(info.value).status == 400 and info.value.param == "input"


def test_too_many_inputs():
    assert len(parse_input(["x"] * MAX_INPUTS)) == MAX_INPUTS
    with pytest.raises(RequestError, match="at most"):
        parse_input(["x"] * (MAX_INPUTS + 1))


@given(st.lists(st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=8, max_size=8),
                min_size=1, max_size=4), st.integers(1, 8))
def test_shorten_keeps_a_prefix_at_unit_length(rows, dims):
    vectors = np.array(rows, dtype=np.float32)
    short = shorten(vectors, dims)
    assert np.array_equal(vectors, np.array(rows, dtype=np.float32))  # the input is left alone
    assert short.shape == (len(rows), dims)
    norms = np.linalg.norm(vectors[:, :dims], axis=1)
    for row, norm, full in zip(short, norms, vectors):
        if norm > 1e-6:
            assert np.isclose(np.linalg.norm(row), 1.0, atol=1e-5)
            assert np.allclose(row * norm, full[:dims], rtol=1e-4, atol=1e-4)


@given(st.lists(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=3, max_size=3),
                min_size=1, max_size=5))
def test_encodings_round_trip_float32_exactly(rows):
    vectors = np.array(rows, dtype=np.float32)
    floats = [json.loads(text) for text in encode_vectors(vectors, "float")]
    assert np.array_equal(np.array(floats, dtype=np.float32), vectors)
    b64 = [json.loads(text) for text in encode_vectors(vectors, "base64")]
    decoded = np.stack([np.frombuffer(base64.b64decode(s), dtype="<f4") for s in b64])
    assert np.array_equal(decoded, vectors)


def test_float_text_is_json_numbers():
    vectors = np.array([[1e-30, -0.0, 3e38, 0.1, -12345.678]], dtype=np.float32)
    (text,) = encode_vectors(vectors, "float")
    assert all(isinstance(x, float) or isinstance(x, int) for x in json.loads(text))
