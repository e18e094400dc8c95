"""Why a task failed, and the provider's error while it has not.

Plain functions of a task record's ``fail_reason`` and ``data`` (the provider's last raw
answer): :func:`upstream_error_of` finds an error object in ``data``, :func:`failure_kind_of`
sorts a failure into a :class:`FailureKind` by the rules of :data:`RULES`, first match wins.
"""

from __future__ import annotations

import enum
import re
from typing import Any, Final

import msgspec

__all__ = [
    "RULES",
    "FailureKind",
    "Rule",
    "UpstreamError",
    "failure_kind_of",
    "failure_rule_of",
    "upstream_error_of",
]


class FailureKind(str, enum.Enum):
    """What kind of failure ended a task, and so what to do about it.

    Read it from :attr:`Task.failure_kind <anyfast_async.Task.failure_kind>` or
    :attr:`TaskFailedError.kind <anyfast_async.TaskFailedError.kind>`.
    """

    CONTENT_POLICY = "content_policy"
    """The prompt, an input image or video, or the output was refused by moderation: change
    the input; the same request fails again."""
    INVALID_INPUT = "invalid_input"
    """The request was wrong (a parameter, an image URL, a size, a duration): fix it."""
    UPSTREAM_ERROR = "upstream_error"
    """The provider failed (an internal error, an outage, overload, throttling): the same
    request may succeed if created again."""
    TIMED_OUT = "timed_out"
    """The gateway gave up on the task (its 24-hour limit): created again, it may succeed."""
    QUOTA = "quota"
    """No money or quota left (the account's, the key's or the provider channel's): top up
    or wait, then create again."""
    UNKNOWN = "unknown"
    """No rule knows the reason."""

    @property
    def retryable(self) -> bool:
        """Whether creating the same task again may succeed (``UPSTREAM_ERROR``,
        ``TIMED_OUT``)."""
        return self in (FailureKind.UPSTREAM_ERROR, FailureKind.TIMED_OUT)


class UpstreamError(msgspec.Struct, frozen=True, gc=False):
    """An error the provider answered the gateway's poll with, while the task is not finished
    (see :attr:`Task.upstream_error <anyfast_async.Task.upstream_error>`).

    Attributes:
        code: The provider's error code as a string (``"InvalidApiKey"``, ``"1102"``), or
            ``""`` when it sent none.
        message: The provider's message, or ``""``.
    """

    code: str
    message: str

    def __str__(self) -> str:
        if self.code and self.message:
            return f"{self.code}: {self.message}"
        return self.code or self.message


def _text(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, (str, int, float)):
        return str(value)
    return ""


#: Codes that providers send on success: DashScope and Kling ``0``, HTTP-style ``200``,
#: Jimeng ``10000``, and words (compared lower-case).
_SUCCESS_CODES: Final = frozenset(
    {"", "0", "200", "10000", "ok", "success", "succeed", "succeeded"}
)
_SUCCESS_MESSAGES: Final = frozenset({"ok", "success", "succeed", "succeeded"})


def _is_success(code: str, message: str) -> bool:
    return code.lower() in _SUCCESS_CODES or message.strip().lower() in _SUCCESS_MESSAGES


def _error_object(value: Any) -> UpstreamError | None:
    """``{"code", "message"}`` (or ``type``, ``status_code``/``status_msg``), or a non-empty
    string, as an error; ``None`` for anything that does not say an error happened."""
    if isinstance(value, str):
        return UpstreamError("", value) if value.strip() else None
    if not isinstance(value, dict):
        return None
    code = _text(value.get("code"))
    message = _text(value.get("message")) or _text(value.get("msg"))
    if _is_success(code, message):
        code = ""
        if message.strip().lower() in _SUCCESS_MESSAGES:
            message = ""
    if not code:
        kind = _text(value.get("type"))
        if kind or message:
            return UpstreamError(kind, message)
        return None
    return UpstreamError(code, message)


def upstream_error_of(data: Any) -> UpstreamError | None:
    """The provider's error in a task record's ``data``, or ``None``.

    Looked for, in order: an ``error`` member (an object, as Volcengine Ark and OpenAI-style
    APIs send, or a non-empty string, as the gateway's Gemini/Vertex records carry), a
    non-empty ``output.code`` (DashScope), a top-level ``code`` that is not a success code
    (DashScope's error answer ``{"code", "message", "request_id"}``; Kling's ``code`` other
    than ``0``; not ``0``, ``200``, ``10000`` (Jimeng), ``"success"``, nor any code whose
    message is ``"Success"``), and MiniMax's ``base_resp`` with a ``status_code`` other than
    ``0``.

    >>> upstream_error_of({"code": "InvalidApiKey", "message": "Invalid API-key provided."})
    UpstreamError(code='InvalidApiKey', message='Invalid API-key provided.')
    >>> upstream_error_of({"output": {"task_status": "RUNNING"}}) is None
    True
    """
    if not isinstance(data, dict):
        return None
    found = data.get("error")
    if found is not None:
        error = _error_object(found)
        if error is not None:
            return error
    output = data.get("output")
    if isinstance(output, dict) and output.get("code"):
        output_code = _text(output.get("code"))
        if output_code:
            return UpstreamError(output_code, _text(output.get("message")))
    if "code" in data:
        code = data.get("code")
        if isinstance(code, (str, int)) and not isinstance(code, bool):
            message = _text(data.get("message"))
            if not _is_success(str(code), message):
                return UpstreamError(str(code), message)
    base = data.get("base_resp")
    if isinstance(base, dict):
        status = base.get("status_code")
        if isinstance(status, int) and not isinstance(status, bool) and status != 0:
            return UpstreamError(str(status), _text(base.get("status_msg")))
    return None


class Rule(msgspec.Struct, frozen=True):
    """One rule of :data:`RULES`: a failure whose provider error code matches ``code`` (a
    regular expression matched against the whole code, case-sensitive), or whose reason or
    provider message contains a match of ``text`` (case-insensitive), is of ``kind``.

    Attributes:
        kind: The kind it gives.
        code: A regular expression for the provider's error code, or ``""``.
        text: A regular expression searched in the reason and the provider's message, or
            ``""``.
        provider: Whose codes or words these are.
        source: Where they are documented.
    """

    kind: FailureKind
    code: str = ""
    text: str = ""
    provider: str = ""
    source: str = ""


_GATEWAY = "QuantumNous/new-api, service/task_polling.go (the gateway AnyFast runs a fork of)"
_DASHSCOPE = "https://www.alibabacloud.com/help/en/model-studio/error-code"
_ARK = "https://www.volcengine.com/docs/82379/1299023"
_KLING = (
    "https://app.klingai.com/global/dev/document-api/apiReference/commonInfo;"
    " https://cloud.baidu.com/doc/qianfan-api/s/4mwbl4bz4"
)
_GOOGLE = "https://cloud.google.com/apis/design/errors (google.rpc.Code)"
_CP, _II, _UE, _TO, _QU = (
    FailureKind.CONTENT_POLICY,
    FailureKind.INVALID_INPUT,
    FailureKind.UPSTREAM_ERROR,
    FailureKind.TIMED_OUT,
    FailureKind.QUOTA,
)

#: The rules, in the order they are tried: the gateway's own timeout first (``data`` may
#: still hold a stale "running" answer then), then the provider's error code, then words of
#: the reason and of the provider's message. The first that matches gives the kind.
RULES: Final[tuple[Rule, ...]] = (
    # -- the gateway's own reasons ---------------------------------------------------------
    Rule(
        _TO,
        text=r"^\s*任务超时|task (timed out|timeout)\s*[\uff08(]",
        provider="gateway",
        source=_GATEWAY,
    ),
    Rule(
        _UE,
        text=r"获取渠道信息失败|failed to get channel info",
        provider="gateway",
        source=_GATEWAY,
    ),
    # -- provider error codes ----------------------------------------------------------------
    Rule(_II, code=r"InvalidParameter\.DataInspection", provider="DashScope", source=_DASHSCOPE),
    Rule(
        _CP,
        code=r"DataInspectionFailed|data_inspection_failed|IPInfringementSuspect"
        r"|ip_infringement_suspect|CustomRoleBlocked|custom_role_blocked|FaqRuleBlocked"
        r"|faq_rule_blocked",
        provider="DashScope",
        source=_DASHSCOPE,
    ),
    Rule(
        _CP,
        code=r".*SensitiveContentDetected.*|(Input|Output)(Text|Image|Video|Audio)RiskDetection",
        provider="Volcengine Ark (Seedance)",
        source=_ARK,
    ),
    Rule(_CP, code=r"1301", provider="Kling", source=_KLING),
    Rule(
        _QU,
        code=r"Arrearage|AllocationQuota\.FreeTierOnly|PrepaidBillOverdue|PostpaidBillOverdue"
        r"|CommodityNotPurchased",
        provider="DashScope",
        source=_DASHSCOPE,
    ),
    Rule(
        _QU,
        code=r"AccountOverdueError|OperationDenied\.ServiceOverdue|QuotaExceeded|SetLimitExceeded",
        provider="Volcengine Ark (Seedance)",
        source=_ARK,
    ),
    Rule(_QU, code=r"1101|1102", provider="Kling", source=_KLING),
    Rule(
        _UE,
        code=r"Throttling(\..*)?|LimitRequests|limit_requests|limit_burst_rate|insufficient_quota"
        r"|InternalError(\..*)?|internal_error|SystemError|ModelServiceFailed|RequestTimeOut"
        r"|ModelServingError|ModelUnavailable|InvalidApiKey|invalid_api_key|AccessDenied(\..*)?"
        r"|Model\.AccessDenied|Workspace\.AccessDenied|ModelNotFound|model_not_found",
        provider="DashScope",
        source=_DASHSCOPE,
    ),
    Rule(
        _UE,
        code=r".*RateLimitExceeded.*|ServerOverloaded|RequestBurstTooFast|InflightBatchsizeExceeded"
        r"|InternalServiceError|ContentSecurityDetectionError|InvalidEndpoint\..*"
        r"|InvalidEndpointOrModel\..*|AuthenticationError|OperationDenied\.ServiceNotOpen"
        r"|ModelNotOpen",
        provider="Volcengine Ark (Seedance)",
        source=_ARK,
    ),
    Rule(_UE, code=r"100[0-4]|1103|130[2-4]|500[0-2]", provider="Kling", source=_KLING),
    Rule(
        _UE,
        code=r"INTERNAL|UNAVAILABLE|DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED|PERMISSION_DENIED"
        r"|UNAUTHENTICATED",
        provider="Google",
        source=_GOOGLE,
    ),
    Rule(
        _II,
        code=r"(InvalidParameter|MissingParameter|InvalidURL|InvalidFile|InvalidImage|InvalidVideo"
        r"|BadRequest)(\..*)?|InvalidImageResolution|InvalidImageFormat|InvalidPerson"
        r"|InvalidInputLength|UnsupportedOperation",
        provider="DashScope, Volcengine Ark",
        source=f"{_DASHSCOPE}; {_ARK}",
    ),
    Rule(_II, code=r"120[0-3]", provider="Kling", source=_KLING),
    Rule(_II, code=r"INVALID_ARGUMENT", provider="Google", source=_GOOGLE),
    # -- words of the reason and of the provider's message: a provider's trouble first, so
    # that "moderation service unavailable" is not taken for a refusal --------------------
    Rule(
        _UE,
        text=r"(?<!free )allocated quota exceeded|rate.?limit|throttl|too many requests"
        r"|requests? per minute|burst|overload|限流|请求过快|并发|超出配额|配额限制",
        provider="DashScope, Volcengine Ark, Kling",
        source=f"{_DASHSCOPE}; {_ARK}; {_KLING}",
    ),
    Rule(
        _UE,
        text=r"internal.?(server.?)?error|internalerror|system ?error|unavailable|timed? ?out"
        r"|timeout|try again later|backlog|maintenance|api.?key|access denied"
        r"|unauthori[sz]ed|permission denied|服务器|内部|上游|繁忙|超时|稍后重试|维护",
        provider="DashScope, Volcengine Ark, Kling",
        source=f"{_DASHSCOPE}; {_ARK}; {_KLING}",
    ),
    Rule(
        _CP,
        text=r"inappropriate content|data.?inspection.?failed|ip infringement|sensitive.?content"
        r"|sensitive information|may contain (a )?real person|copyright restriction"
        r"|risk.?detection|risk control system|content (security|safety|moderation|policy)"
        r"|green ?net|moderation|safety (system|filter)|responsible ai|raimediafiltered"
        r"|违规|敏感|审核|内容安全|风控|绿网|版权",
        provider="DashScope, Volcengine Ark, Kling, Google, OpenAI",
        source=f"{_DASHSCOPE}; {_ARK}; {_KLING}",
    ),
    Rule(
        _QU,
        text=r"arrearage|overdue|in arrears|good standing|insufficient[ _](user[ _])?"
        r"(quota|balance|credit)|balance (is )?(not enough|insufficient)"
        r"|quota (exceeded|exhausted)|free (tier|allocated quota)|resource pack"
        r"|余额不足|欠费|额度不足|额度已用|配额不足|配额已用|资源包",
        provider="DashScope, Volcengine Ark, Kling, gateway",
        source=f"{_DASHSCOPE}; {_ARK}; {_KLING}",
    ),
    Rule(
        _II,
        text=r"invalid.?(parameter|url|image|file|value|argument)|missing.?parameter|not valid"
        r"|required parameter|unsupported|not supported|out of range|aspect ratio"
        r"|too (large|small|long|short)|(unable|failed) to download|download (image )?failed"
        r"|file format|参数(错误|无效|不合法|非法)|非法参数|缺少.{0,8}参数"
        r"|格式(错误|不支持|不正确)|不支持|无法下载|分辨率|宽高比",
        provider="DashScope, Volcengine Ark, Kling",
        source=f"{_DASHSCOPE}; {_ARK}; {_KLING}",
    ),
)

_CODE_RULES: Final = [(rule, re.compile(rule.code)) for rule in RULES if rule.code]
_TEXT_RULES: Final = [(rule, re.compile(rule.text, re.IGNORECASE)) for rule in RULES if rule.text]
_GATEWAY_RULES: Final = [(r, p) for r, p in _TEXT_RULES if r.provider == "gateway"]
_WORD_RULES: Final = [(r, p) for r, p in _TEXT_RULES if r.provider != "gateway"]
_MODERATION: Final = next((r, p) for r, p in _WORD_RULES if r.kind is FailureKind.CONTENT_POLICY)
_CODE_IN_REASON: Final = re.compile(r"code:\s*([A-Za-z_][\w.]*)|^\[([\w.]+)\]")


def _provider_code(reason: str, data: Any) -> tuple[str, str]:
    """The provider's error code and message in a failed task's ``data`` (DashScope's
    ``output.code``, an ``error`` object's ``code`` or ``status``, a top-level ``code`` that is
    not a success, Vidu's ``err_code``, Kling's ``task_status_msg``), else a code the gateway
    wrote into the reason (``task failed, code: X , message: Y``; ``[X] message``)."""
    code = message = ""
    if isinstance(data, dict):
        output = data.get("output")
        error = data.get("error")
        inner = data.get("data")
        if isinstance(output, dict) and _text(output.get("code")):
            code, message = _text(output.get("code")), _text(output.get("message"))
        elif isinstance(error, dict):
            status = _text(error.get("status"))  # google.rpc's name, before its number
            code = status if status.isupper() else _text(error.get("code")) or status
            message = _text(error.get("message"))
        else:
            found = upstream_error_of(data)
            if found is not None:
                code, message = found.code, found.message
            elif _text(data.get("err_code")):
                code = _text(data.get("err_code"))
        if not message and isinstance(inner, dict):
            message = _text(inner.get("task_status_msg"))
    if not code:
        match = _CODE_IN_REASON.search(reason)
        if match is not None:
            code = match.group(1) or match.group(2)
    return code, message


def failure_rule_of(reason: str, data: Any) -> Rule | None:
    """The rule of :data:`RULES` that sorts a failure (see :func:`failure_kind_of`), or
    ``None`` when none does."""
    for rule, pattern in _GATEWAY_RULES:  # the gateway's own reasons come before any code
        if pattern.search(reason):
            return rule
    code, message = _provider_code(reason, data)
    if code:
        for rule, pattern in _CODE_RULES:
            if pattern.fullmatch(code):
                if rule.kind is FailureKind.INVALID_INPUT and _mentions_moderation(message):
                    return _MODERATION[0]  # DashScope moderation as a bad parameter
                return rule
    texts = [text for text in (reason, message) if text]
    for rule, pattern in _WORD_RULES:
        if any(pattern.search(text) for text in texts):
            return rule
    return None


def failure_kind_of(reason: str, data: Any) -> FailureKind:
    """Sort a failure by its reason (``fail_reason``) and the provider's code and message in
    ``data``, by :data:`RULES`: the gateway's timeout, then the code, then the words; none
    matches: :attr:`FailureKind.UNKNOWN`. Never raises.

    >>> failure_kind_of("task failed", {"output": {"code": "DataInspectionFailed"}})
    <FailureKind.CONTENT_POLICY: 'content_policy'>
    """
    rule = failure_rule_of(reason, data)
    return FailureKind.UNKNOWN if rule is None else rule.kind


def _mentions_moderation(message: str) -> bool:
    return bool(message) and _MODERATION[1].search(message) is not None
