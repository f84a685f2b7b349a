"""The sampling fields, declared once.

Each field of ``SamplingParams`` carries its bounds and meaning in its metadata; the request
schemas (``localai.api.schemas``), the model YAML's ``parameters:`` block (``localai.config``)
and the engine's sampler chain are all derived from this one declaration. A value comes from
the request, else from the model's YAML, else from the default here (OpenAI's).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

# seed: any 64-bit value, signed or unsigned (clients send both; the sampler uses the low 32 bits)
SEED_MIN, SEED_MAX = -(1 << 63), (1 << 64) - 1


def _knob(default: Any, minimum: float | None = None, maximum: float | None = None, *, doc: str) -> Any:
    return field(default=default, metadata={"minimum": minimum, "maximum": maximum, "doc": doc, "knob": True})


@dataclass(frozen=True)
class SamplingParams:
    """What one sequence samples with. The knobs (the fields with bounds) may be set by a
    request or a model's YAML; ``logit_bias`` and ``grammar`` come from the request only."""

    temperature: float = _knob(1.0, 0, 2, doc="0 is greedy; higher is more random")
    top_p: float = _knob(1.0, 0, 1, doc="nucleus sampling: keep the smallest set of tokens with this probability")
    top_k: int = _knob(0, 0, None, doc="keep the k most likely tokens (0: all)")
    min_p: float = _knob(0.0, 0, 1, doc="drop tokens less likely than min_p times the most likely one")
    typical_p: float = _knob(1.0, 0, 1, doc="locally typical sampling (1: off)")
    repeat_penalty: float = _knob(1.0, 0, 10, doc="divide the logits of recent tokens by this (1: off)")
    repeat_last_n: int = _knob(64, -1, None, doc="how many recent tokens the penalties look at (-1: the context)")
    presence_penalty: float = _knob(0.0, -2, 2, doc="subtract this from tokens already present")
    frequency_penalty: float = _knob(0.0, -2, 2, doc="subtract this times each token's count so far")
    seed: int | None = _knob(None, SEED_MIN, SEED_MAX, doc="same seed, same text (None: random)")
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    grammar: str | None = None

    def with_seed(self, seed: int | None) -> "SamplingParams":
        return dataclasses.replace(self, seed=seed)

    @property
    def uses_penalties(self) -> bool:
        return self.repeat_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0


@dataclass(frozen=True)
class Knob:
    """One settable sampling field: its name, Python type and bounds (None: unbounded)."""

    name: str
    kind: type  # int or float
    default: Any
    minimum: float | None
    maximum: float | None
    doc: str

    @property
    def json_type(self) -> str:
        return "integer" if self.kind is int else "number"


def _knobs() -> tuple[Knob, ...]:
    hints = {"float": float, "int": int, "int | None": int}
    return tuple(Knob(f.name, hints[f.type], f.default, f.metadata["minimum"], f.metadata["maximum"],
                      f.metadata["doc"])
                 for f in dataclasses.fields(SamplingParams) if f.metadata.get("knob"))


KNOBS: tuple[Knob, ...] = _knobs()
KNOB_NAMES: tuple[str, ...] = tuple(k.name for k in KNOBS)


def resolve_sampling(request: Mapping[str, Any], defaults: Mapping[str, Any], *,
                     logit_bias: Mapping[int, float] | None = None, grammar: str | None = None) -> SamplingParams:
    """The request's value of each knob, else the model's default, else ours; each converted to
    its type (the request schema has already checked types and bounds, and accepts 2.0 for an
    integer field)."""
    values: dict[str, Any] = {}
    for knob in KNOBS:
        value = request.get(knob.name)
        if value is None:
            value = defaults.get(knob.name)
        if value is not None:
            values[knob.name] = knob.kind(value)
    return SamplingParams(**values, logit_bias=dict(logit_bias or {}), grammar=grammar)
