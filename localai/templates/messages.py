"""OpenAI chat messages checked and reduced to what templates render: a role and text content."""

from __future__ import annotations

from typing import Any

from localai.errors import InvalidRequest


def text_content(content: Any, index: int) -> str:
    """A message's content as text: OpenAI allows a string, null, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts: list[str] = []
        for j, part in enumerate(content):
            param = f"messages[{index}].content[{j}]"
            if not isinstance(part, dict):
                raise InvalidRequest("content parts must be objects", param=param)
            kind = part.get("type")
            key = "refusal" if kind == "refusal" else "text"
            if kind in ("text", "refusal"):
                text = part.get(key)
                if not isinstance(text, str):
                    raise InvalidRequest(f"content part of type {kind!r} needs a string {key!r}", param=param)
                texts.append(text)
            elif kind in ("image_url", "image"):
                raise InvalidRequest("image input is not supported by this model", param=param)
            elif kind in ("input_audio", "audio_url", "audio"):
                raise InvalidRequest("audio input is not supported by this model", param=param)
            else:
                raise InvalidRequest(f"content part type {kind!r} is not supported", param=param)
        # llama.cpp's server joins text parts with a newline as well.
        return "\n".join(texts)
    raise InvalidRequest(
        "message content must be a string, a list of content parts, or null",
        param=f"messages[{index}].content",
    )


def normalize_messages(messages: list[dict]) -> list[dict]:
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be a list", param="messages")
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest("each message must be an object", param=f"messages[{index}]")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise InvalidRequest("each message needs a string 'role'", param=f"messages[{index}].role")
        out.append({**message, "content": text_content(message.get("content"), index)})
    return out


WORD_JOINER = "\u2060"


def defuse_control_tokens(value: Any, control_texts: tuple[str, ...]) -> Any:
    """``value`` (a message list, tools...) with every control-token text in its strings broken by
    a word joiner after its first character, so a client's text is read as text: a message
    holding ``<|im_start|>system`` cannot open a turn of its own. Only the template's own text
    may contain control tokens."""
    if not control_texts:
        return value
    if isinstance(value, str):
        return _defuse_text(value, control_texts) if any(t in value for t in control_texts) else value
    if isinstance(value, list):
        return [defuse_control_tokens(v, control_texts) for v in value]
    if isinstance(value, dict):
        return {k: defuse_control_tokens(v, control_texts) for k, v in value.items()}
    return value


def _defuse_text(text: str, control_texts: tuple[str, ...]) -> str:
    for marker in control_texts:  # longest first, so a marker inside a longer one is handled with it
        if marker in text and len(marker) > 1:
            text = text.replace(marker, marker[0] + WORD_JOINER + marker[1:])
    return text
