"""What the providers behind the gateway answer when something goes wrong, as the gateway
passes it on: their real error codes and messages, for the fake's failure and upstream-error
stages.

Each failure is the provider's raw answer (the task's ``data``) and the ``fail_reason`` the
gateway makes of it: DashScope (HappyHorse, Wan) as ``task failed, code: X , message: Y`` with
``output.code``/``output.message``; Volcengine Ark (Seedance) with the ``error`` object's
message as the reason; Kling with its ``task_status_msg``. The codes and messages are those the
providers document (Alibaba Cloud Model Studio's error codes, Volcengine Ark's error codes,
Kling's common error codes); the gateway's own 24-hour timeout reason is the gateway's.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "FAILURES",
    "GATEWAY_TIMEOUT",
    "PROVIDERS",
    "UPSTREAM_ERRORS",
    "failure",
    "upstream_error",
]

#: The gateway's reason for a task it gave up on after 24 hours.
GATEWAY_TIMEOUT: Final = "任务超时\uff081440分钟\uff09"

PROVIDERS: Final = ("dashscope", "seedance", "kling")

#: (provider, kind) -> (code, message): a failure of that kind as the provider reports it.
FAILURES: Final[dict[tuple[str, str], tuple[str, str]]] = {
    ("dashscope", "content_policy"): (
        "DataInspectionFailed",
        "Input data may contain inappropriate content.",
    ),
    ("dashscope", "invalid_input"): (
        "InvalidParameter",
        "the size of input image is too small or too large.",
    ),
    ("dashscope", "upstream_error"): ("InternalError.Algo", "inference internal error."),
    ("dashscope", "quota"): (
        "Arrearage",
        "Access denied, please make sure your account is in good standing.",
    ),
    ("seedance", "content_policy"): (
        "OutputVideoSensitiveContentDetected",
        "The request failed because the output video may contain sensitive information.",
    ),
    ("seedance", "invalid_input"): (
        "InvalidParameter",
        "One or more parameters specified in the request are not valid.",
    ),
    ("seedance", "upstream_error"): (
        "RateLimitExceeded.EndpointRPMExceeded",
        "The Requests Per Minute (RPM) limit of the associated endpoint for your account has"
        " been exceeded.",
    ),
    ("seedance", "quota"): (
        "AccountOverdueError",
        "The request failed because your account has an overdue balance.",
    ),
    ("kling", "content_policy"): ("1301", "Failure to pass the risk control system"),
    ("kling", "invalid_input"): (
        "1201",
        "Invalid parameters, such as incorrect key or illegal value",
    ),
    ("kling", "upstream_error"): ("5000", "Server internal error"),
    ("kling", "quota"): ("1102", "Resource pack depleted or expired"),
}

#: provider -> (code, message): an error the provider answers the gateway's poll with while
#: the task waits (the channel's key revoked, an outage).
UPSTREAM_ERRORS: Final[dict[str, tuple[str, str]]] = {
    "dashscope": ("InvalidApiKey", "Invalid API-key provided."),
    "seedance": (
        "AuthenticationError",
        "The API key or AK/SK in the request is missing or invalid.",
    ),
    "kling": ("5001", "Server temporarily unavailable, usually due to maintenance"),
}

_DASHSCOPE_REQUEST = "4d1b2c3a-8e8f-9d6c-a1b2-7f0e5c4d3b2a"
_SEEDANCE_ID = "cgt-20261205101010-abcde"


def failure(provider: str, kind: str) -> tuple[str, Any]:
    """``(fail_reason, data)`` of a task that failed with a failure of ``kind`` (a
    ``FailureKind`` value: ``"content_policy"``, ``"invalid_input"``, ``"upstream_error"``,
    ``"quota"``, ``"timed_out"``, ``"unknown"``) at ``provider``, as the gateway reports it.

    Raises:
        ValueError: an unknown provider or kind.
    """
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
    if kind == "timed_out":  # the gateway's own end; data keeps the provider's last answer
        return GATEWAY_TIMEOUT, _running(provider)
    if kind == "unknown":
        return "task failed", None
    try:
        code, message = FAILURES[(provider, kind)]
    except KeyError:
        raise ValueError(f"unknown failure kind {kind!r}") from None
    if provider == "dashscope":
        output = {"task_id": _DASHSCOPE_REQUEST, "task_status": "FAILED"}
        output |= {"code": code, "message": message}
        reason = f"task failed, code: {code} , message: {message}"
        return reason, {"output": output, "request_id": _DASHSCOPE_REQUEST}
    if provider == "seedance":
        data = {
            "id": _SEEDANCE_ID,
            "model": "doubao-seedance-2-0-260128",
            "status": "failed",
            "error": {"code": code, "message": message},
        }
        return message, data
    inner = {"task_id": "kling-task-1", "task_status": "failed", "task_status_msg": message}
    if kind == "quota":  # a refused account answers its code
        return message, {"code": int(code), "message": message, "data": inner}
    return message, {"code": 0, "message": "SUCCEED", "data": inner}


def upstream_error(provider: str, code: str | None = None, message: str | None = None) -> Any:
    """The ``data`` of a waiting task whose provider answered the gateway's poll with an
    error: DashScope's ``{"code", "message", "request_id"}``, Volcengine Ark's ``{"error":
    {...}}``, Kling's non-zero ``code``. Default code and message: :data:`UPSTREAM_ERRORS`.

    Raises:
        ValueError: an unknown provider.
    """
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {PROVIDERS}, got {provider!r}")
    default_code, default_message = UPSTREAM_ERRORS[provider]
    code = default_code if code is None else code
    message = default_message if message is None else message
    if provider == "dashscope":
        return {"code": code, "message": message, "request_id": _DASHSCOPE_REQUEST}
    if provider == "seedance":
        return {"error": {"code": code, "message": message, "type": "BadRequest"}}
    return {"code": int(code) if code.isdigit() else code, "message": message, "request_id": "k1"}


def _running(provider: str) -> Any:
    if provider == "dashscope":
        output = {"task_id": _DASHSCOPE_REQUEST, "task_status": "RUNNING"}
        return {"output": output, "request_id": _DASHSCOPE_REQUEST}
    if provider == "seedance":
        return {"id": _SEEDANCE_ID, "model": "doubao-seedance-2-0-260128", "status": "running"}
    inner = {"task_id": "kling-task-1", "task_status": "processing"}
    return {"code": 0, "message": "SUCCEED", "data": inner}
