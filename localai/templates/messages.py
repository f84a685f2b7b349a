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
