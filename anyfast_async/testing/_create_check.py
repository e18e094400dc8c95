"""What the documented server accepts in a create body (``POST /v1/video/generations``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_HAPPYHORSE = ("happyhorse-1.0-t2v", "happyhorse-1.0-i2v", "happyhorse-1.0-r2v")
_EDIT = "happyhorse-1.0-video-edit"
_KNOB_RULES: dict[str, Callable[[Any], bool]] = {
    "resolution": lambda v: v in ("720P", "1080P"),
    "ratio": lambda v: v in ("16:9", "9:16", "1:1", "4:3", "3:4"),
    "duration": lambda v: type(v) is int and 3 <= v <= 15,
    "watermark": lambda v: type(v) is bool,
    "seed": lambda v: type(v) is int and 0 <= v <= 2_147_483_647,
}


def _is_http_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://")) and len(value) > 8


def check_create_body(doc: object, *, max_images: int = 9) -> str | None:
    """What the documented server would refuse in a create body, or ``None`` if it is valid.

    HappyHorse 1.0 bodies are checked against the documented limits (knobs at the top level or
    in ``parameters``; video-edit in the native ``input.media`` form). Other models only need a
    ``model``.
    """
    if not isinstance(doc, dict):
        return "request body must be a JSON object"
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        return "model is required"
    if model not in (*_HAPPYHORSE, _EDIT):
        return None
    parameters = doc.get("parameters", {})
    if not isinstance(parameters, dict):
        return "parameters must be an object"
    knobs = {**{k: doc[k] for k in _KNOB_RULES if k in doc}, **parameters}
    for name, value in knobs.items():
        rule = _KNOB_RULES.get(name)
        if rule is not None and not rule(value):
            return f"invalid {name}: {value!r}"
    if model == _EDIT:
        payload = doc.get("input")
        if not isinstance(payload, dict):
            return "input is required for happyhorse-1.0-video-edit"
        prompt = payload.get("prompt")
        media = payload.get("media")
        if not isinstance(media, list) or len(media) != 2:
            return "input.media must hold exactly one video and one reference_image"
        kinds = sorted(str(m.get("type")) for m in media if isinstance(m, dict))
        if kinds != ["reference_image", "video"]:
            return "input.media must hold exactly one video and one reference_image"
        if not all(isinstance(m, dict) and _is_http_url(m.get("url")) for m in media):
            return "input.media[].url must be an http(s) URL"
    else:
        prompt = doc.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    if model == "happyhorse-1.0-i2v":
        image = doc.get("image")
        if image is None and isinstance(doc.get("images"), list) and doc["images"]:
            image = doc["images"][0]
        if not _is_http_url(image):
            return "image must be an http(s) URL"
    if model == "happyhorse-1.0-r2v":
        images = doc.get("images")
        if not isinstance(images, list) or not 1 <= len(images) <= max_images:
            return f"images must hold 1 to {max_images} URLs"
        if not all(_is_http_url(url) for url in images):
            return "images must be http(s) URLs"
    return None
