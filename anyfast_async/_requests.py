"""What is sent: the query path of a task, and the typed create requests with their validation.

No I/O happens here. A task id becomes one percent-encoded path segment. Each create request
validates itself when built (before anything is sent) and renders the body the documentation
shows: knobs inside ``parameters``, video-edit in the native ``input.media`` form, and only what
the caller set, so the server's defaults apply to the rest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal
from urllib.parse import quote, urlsplit

__all__ = [
    "TASKS_PATH",
    "CreateRequest",
    "ImageToVideo",
    "RawCreate",
    "ReferenceToVideo",
    "TextToVideo",
    "VideoEdit",
    "task_path",
]

#: The create endpoint (POST), and the prefix of each task's query path (GET).
TASKS_PATH: Final = "/v1/video/generations"


#: Ids made only of characters that percent-encoding leaves alone.
_PLAIN_ID: Final = re.compile(r"[A-Za-z0-9_.~-]+")


def task_path(task_id: str) -> str:
    """The query path of ``task_id``, sent as one percent-encoded path segment.

    ``/``, ``?``, ``#``, spaces and dot segments cannot change which URL is requested.

    Raises:
        TypeError: ``task_id`` is not a string.
        ValueError: ``task_id`` is empty or only whitespace.
    """
    if not isinstance(task_id, str):
        raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
    if _PLAIN_ID.fullmatch(task_id) and task_id not in (".", ".."):
        return f"{TASKS_PATH}/{task_id}"  # nothing to encode (every id the API issues)
    if not task_id.strip():
        raise ValueError("task_id must be a non-empty string")
    try:
        segment = quote(task_id, safe="")
    except UnicodeEncodeError:
        raise ValueError("task_id must be valid Unicode text (it has a lone surrogate)") from None
    if segment in (".", ".."):
        segment = segment.replace(".", "%2E")
    return f"{TASKS_PATH}/{segment}"


Resolution = Literal["720P", "1080P"]
Ratio = Literal["16:9", "9:16", "1:1", "4:3", "3:4"]

RESOLUTIONS: Final = ("720P", "1080P")
RATIOS: Final = ("16:9", "9:16", "1:1", "4:3", "3:4")
MIN_DURATION: Final = 3
MAX_DURATION: Final = 15
MAX_SEED: Final = 2_147_483_647
#: AnyFast documents 1 to 3 reference images; the upstream model accepts more.
DEFAULT_MAX_IMAGES: Final = 3


def _check_prompt(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("prompt must not be empty")
    return prompt


def _check_url(name: str, url: object) -> str:
    if not isinstance(url, str):
        raise TypeError(f"{name} must be a URL string, not {type(url).__name__}")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{name} must be an http(s) URL, got {url!r}")
    return url.strip()


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return str(value)


_ALL_KNOBS: Final = ("resolution", "ratio", "duration", "watermark", "seed")


@dataclass(frozen=True, kw_only=True, slots=True)
class _Knobs:
    resolution: Resolution | None = None
    ratio: Ratio | None = None
    duration: int | None = None
    watermark: bool | None = None
    seed: int | None = None

    def _check_knobs(self) -> None:
        if self.resolution is not None:
            _check_choice("resolution", self.resolution, RESOLUTIONS)
        if self.ratio is not None:
            _check_choice("ratio", self.ratio, RATIOS)
        if self.duration is not None:
            _check_int("duration", self.duration, MIN_DURATION, MAX_DURATION)
        if self.watermark is not None and not isinstance(self.watermark, bool):
            raise TypeError(f"watermark must be a bool, not {type(self.watermark).__name__}")
        if self.seed is not None:
            _check_int("seed", self.seed, 0, MAX_SEED)

    def _with_parameters(
        self, body: dict[str, Any], names: Sequence[str] = _ALL_KNOBS
    ) -> dict[str, Any]:
        """``body`` with the knobs that were set in ``parameters`` (none: no ``parameters``)."""
        parameters = {name: getattr(self, name) for name in names}
        parameters = {name: value for name, value in parameters.items() if value is not None}
        if parameters:
            body["parameters"] = parameters
        return body


@dataclass(frozen=True, kw_only=True, slots=True)
class TextToVideo(_Knobs):
    """HappyHorse 1.0 text-to-video (``happyhorse-1.0-t2v``).

    Args:
        prompt: What to generate (not empty).
        resolution: ``"720P"`` or ``"1080P"`` (server default ``1080P``).
        ratio: ``"16:9"``, ``"9:16"``, ``"1:1"``, ``"4:3"`` or ``"3:4"`` (default ``16:9``).
        duration: Seconds, 3 to 15 (default 5).
        watermark: ``False`` removes the mark (default ``True``).
        seed: 0 to 2147483647.

    Raises:
        ValueError, TypeError: a value outside the documented limits (nothing is sent).
    """

    model: ClassVar[str] = "happyhorse-1.0-t2v"
    prompt: str

    def __post_init__(self) -> None:
        _check_prompt(self.prompt)
        self._check_knobs()

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/video/generations``."""
        body: dict[str, Any] = {"model": self.model, "prompt": self.prompt}
        return self._with_parameters(body)


@dataclass(frozen=True, kw_only=True, slots=True)
class ImageToVideo(_Knobs):
    """HappyHorse 1.0 image-to-video (``happyhorse-1.0-i2v``): animate a first frame.

    Args:
        image: http(s) URL of the first-frame image.
        prompt: The motion to generate (not empty).

    The knobs ``resolution``, ``ratio``, ``duration``, ``watermark`` and ``seed`` are those of
    :class:`TextToVideo`. (The upstream model follows the image's aspect ratio; ``ratio`` is
    sent if given.)
    """

    model: ClassVar[str] = "happyhorse-1.0-i2v"
    image: str
    prompt: str

    def __post_init__(self) -> None:
        _check_url("image", self.image)
        _check_prompt(self.prompt)
        self._check_knobs()

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/video/generations``."""
        body: dict[str, Any] = {"model": self.model, "prompt": self.prompt, "image": self.image}
        return self._with_parameters(body)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReferenceToVideo(_Knobs):
    """HappyHorse 1.0 reference-to-video (``happyhorse-1.0-r2v``).

    Args:
        images: http(s) URLs of 1 to ``max_images`` reference images (refer to them in the
            prompt as ``[Image 1]``, ``[Image 2]``, ...).
        prompt: What to generate (not empty).
        max_images: The most images accepted (default 3, as AnyFast documents; the upstream
            model accepts more).

    The knobs ``resolution``, ``ratio``, ``duration``, ``watermark`` and ``seed`` are those of
    :class:`TextToVideo`.
    """

    model: ClassVar[str] = "happyhorse-1.0-r2v"
    images: Sequence[str]
    prompt: str
    max_images: int = field(default=DEFAULT_MAX_IMAGES, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.images, str) or not isinstance(self.images, Sequence):
            raise TypeError("images must be a list of URL strings")
        if not 1 <= len(self.images) <= self.max_images:
            raise ValueError(
                f"images must hold 1 to {self.max_images} reference images, got {len(self.images)}"
            )
        for index, url in enumerate(self.images):
            _check_url(f"images[{index}]", url)
        _check_prompt(self.prompt)
        self._check_knobs()

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/video/generations``."""
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": self.prompt,
            "images": list(self.images),
        }
        return self._with_parameters(body)


@dataclass(frozen=True, kw_only=True, slots=True)
class VideoEdit(_Knobs):
    """HappyHorse 1.0 video edit (``happyhorse-1.0-video-edit``), in the native form.

    Args:
        video: http(s) URL of the video to edit (the output follows its length).
        reference_image: http(s) URL of the reference image.
        prompt: The edit instruction (not empty).

    The knobs ``resolution``, ``watermark`` and ``seed`` are those of :class:`TextToVideo`;
    ``ratio`` and ``duration`` do not apply to an edit.
    """

    model: ClassVar[str] = "happyhorse-1.0-video-edit"
    video: str
    reference_image: str
    prompt: str

    def __post_init__(self) -> None:
        _check_url("video", self.video)
        _check_url("reference_image", self.reference_image)
        _check_prompt(self.prompt)
        if self.ratio is not None or self.duration is not None:
            raise ValueError("ratio and duration do not apply to a video edit")
        self._check_knobs()

    def body(self) -> dict[str, Any]:
        """The JSON body of ``POST /v1/video/generations``."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": {
                "prompt": self.prompt,
                "media": [
                    {"type": "video", "url": self.video},
                    {"type": "reference_image", "url": self.reference_image},
                ],
            },
        }
        return self._with_parameters(body, ("resolution", "watermark", "seed"))


@dataclass(frozen=True, slots=True)
class RawCreate:
    """A create call for any model on the same endpoint (Seedance, Wan, ...), sent as given.

    Args:
        model: The model id, e.g. ``"seedance-fast"``.
        fields: The rest of the body; ``model`` is added to it.
    """

    model: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("model must be a non-empty string")
        if not isinstance(self.fields, Mapping):
            raise TypeError("the body must be a mapping")

    def body(self) -> dict[str, Any]:
        """The JSON body: the caller's fields, with ``model``."""
        return {**self.fields, "model": self.model}


CreateRequest = TextToVideo | ImageToVideo | ReferenceToVideo | VideoEdit | RawCreate
