# ruff: noqa: RUF001, E501 (the providers' real messages: full-width punctuation, long lines)
"""Why a task failed: each rule of the failure kinds, with the providers' real codes and
messages (English and Chinese where the provider has both), and the fake server's scripted
failures read back through a real client."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from anyfast_async import AnyFast, FailureKind, Task, TaskFailedError
from anyfast_async._failures import RULES, failure_kind_of, failure_rule_of
from anyfast_async.testing import FakeAnyFast

CP, II, UE, TO, QU, UN = (
    FailureKind.CONTENT_POLICY,
    FailureKind.INVALID_INPUT,
    FailureKind.UPSTREAM_ERROR,
    FailureKind.TIMED_OUT,
    FailureKind.QUOTA,
    FailureKind.UNKNOWN,
)


def dashscope(code: str, message: str) -> dict[str, Any]:
    """A failed DashScope answer, as the gateway keeps it in ``data``."""
    output = {"task_id": "0385dc79", "task_status": "FAILED", "code": code, "message": message}
    return {"output": output, "request_id": "c3b6a7e0"}


def ark(code: str, message: str) -> dict[str, Any]:
    """A failed Volcengine Ark (Seedance) task."""
    return {"id": "cgt-2026", "status": "failed", "error": {"code": code, "message": message}}


def kling(message: str, code: int = 0) -> dict[str, Any]:
    inner = {"task_id": "k1", "task_status": "failed", "task_status_msg": message}
    return {"code": code, "message": "SUCCEED" if code == 0 else message, "data": inner}


RUNNING = {"output": {"task_id": "0385dc79", "task_status": "RUNNING"}, "request_id": "c3"}

# (reason, data, kind): real reasons and provider answers.
CASES: list[tuple[str, Any, FailureKind]] = [
    # The gateway's own reasons (its 24-hour limit, new and old wording; a lost channel).
    ("任务超时（1440分钟）", RUNNING, TO),
    ("任务超时（旧系统遗留任务，不进行退款，请联系管理员）", None, TO),
    ("Failed to get channel info, channel ID: 7", None, UE),
    ("获取渠道信息失败，请联系管理员，渠道ID：7", None, UE),
    # DashScope, by code (output.code), and by the code the gateway wrote into the reason.
    (
        "task failed, code: DataInspectionFailed , message: Input data may contain inappropriate content.",
        dashscope("DataInspectionFailed", "Input data may contain inappropriate content."),
        CP,
    ),
    (
        "task failed",
        dashscope(
            "IPInfringementSuspect", "Input data is suspected of being involved in IP infringement."
        ),
        CP,
    ),
    (
        "task failed, code: Arrearage , message: Access denied, please make sure your account is in good standing.",
        None,
        QU,
    ),
    (
        "task failed",
        dashscope(
            "InvalidParameter.DataInspection",
            "Unable to download the media resource during the data inspection process.",
        ),
        II,
    ),
    (
        "task failed",
        dashscope(
            "InvalidParameter", "The image content does not comply with green network verification."
        ),
        CP,
    ),
    (
        "task failed",
        dashscope("InvalidParameter", "the size of input image is too small or too large."),
        II,
    ),
    (
        "task failed",
        dashscope("InvalidURL.Timeout", "Download xxx timeout, please check network connection."),
        II,
    ),
    (
        "task failed",
        dashscope("Throttling.RateQuota", "Requests rate limit exceeded, try again later."),
        UE,
    ),
    # DashScope's own 3-hour limit is its failure, not the gateway's timeout.
    (
        "task failed",
        dashscope(
            "InternalError.Timeout",
            "An internal timeout error has occured during execution, try again later or contact service support.",
        ),
        UE,
    ),
    ("task failed", {"code": "InvalidApiKey", "message": "Invalid API-key provided."}, UE),
    # DashScope's Chinese wording, no code.
    ("数据检查错误，输入或者输出包含疑似敏感内容被绿网拦截", None, CP),
    ("客户账户因为欠费而被拒绝访问", None, QU),
    # Volcengine Ark (Seedance): newer gateways write only the message; the code is in data.
    (
        "The request failed because the input text may contain sensitive information. Request ID: 0217",
        ark(
            "InputTextSensitiveContentDetected",
            "The request failed because the input text may contain sensitive information. Request ID: 0217",
        ),
        CP,
    ),
    ("输入文本可能包含敏感信息，请您更换后重试", None, CP),
    (
        "The request failed because the output video may be related to copyright restrictions.",
        ark("OutputVideoSensitiveContentDetected.PolicyViolation", ""),
        CP,
    ),
    (
        "[InputImageSensitiveContentDetected] The request failed because the input image may contain sensitive information.",
        None,
        CP,
    ),
    ("task failed", ark("InputImageRiskDetection", ""), CP),
    (
        "One or more parameters specified in the request are not valid. Request ID: 0217",
        ark("InvalidParameter", "One or more parameters specified in the request are not valid."),
        II,
    ),
    ("请求包含非法参数，请查阅 API 文档", None, II),
    (
        "The request failed because your account has an overdue balance.",
        ark(
            "AccountOverdueError", "The request failed because your account has an overdue balance."
        ),
        QU,
    ),
    ("当前账号欠费，如需继续调用，请前往火山引擎费用中心进行充值", None, QU),
    (
        "task failed",
        ark(
            "RateLimitExceeded.EndpointRPMExceeded",
            "The Requests Per Minute (RPM) limit of the associated endpoint for your account has been exceeded.",
        ),
        UE,
    ),
    ("task failed", ark("InternalServiceError", "internal error"), UE),
    # Kling: the reason is task_status_msg; a refused account answers its code.
    (
        "Failure to pass the risk control system",
        kling("Failure to pass the risk control system"),
        CP,
    ),
    ("触发平台的内容安全策略", None, CP),
    ("", kling("", code=1301), CP),
    (
        "Resource pack depleted or expired",
        kling("Resource pack depleted or expired", code=1102),
        QU,
    ),
    ("Server internal error", kling("Server internal error", code=5000), UE),
    ("服务器内部错误", None, UE),
    ("", kling("", code=1201), II),
    ("参数非法，如key写错或value非法", None, II),
    # Google (Gemini, Vertex) error statuses.
    (
        "Internal error encountered.",
        {"error": {"code": 500, "status": "INTERNAL", "message": "Internal error encountered."}},
        UE,
    ),
    ("", {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": ""}}, II),
    # Words only; a provider's trouble is not taken for a refusal or a bad request.
    ("Moderation service unavailable, try again later", None, UE),
    ("审核超时，请稍后重试", None, UE),
    ("内部参数错误", None, UE),
    ("上游返回格式错误", None, UE),
    ("API key not valid. Please pass a valid API key.", None, UE),
    ("超出配额限制", None, UE),
    ("Free allocated quota exceeded.", None, QU),
    ("", {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": ""}}, UE),
    ("Too many requests, please try again later", None, UE),
    ("Your prompt was flagged by our moderation system", None, CP),
    ("insufficient_user_quota: 用户额度不足", None, QU),
    # Nothing known: unknown, whatever data holds.
    ("task failed", None, UN),
    ("", None, UN),
    ("upstream returned unrecognized message", "<html>", UN),
    ("something odd", [1, 2, 3], UN),
    ("something odd", {"output": "not an object", "error": 5, "code": True}, UN),
    ("something odd", {"code": 0, "message": "SUCCEED"}, UN),
]


@pytest.mark.parametrize(
    ("reason", "data", "kind"), CASES, ids=[c[0][:40] or repr(c[1])[:40] for c in CASES]
)
def test_each_failure_is_sorted_by_its_code_or_its_words(
    reason: str, data: Any, kind: FailureKind
) -> None:
    assert failure_kind_of(reason, data) is kind


def test_every_rule_is_exercised() -> None:
    """Each rule decides at least one of the cases above: none is dead, none untested."""
    used = {failure_rule_of(reason, data) for reason, data, _ in CASES}
    unused = [rule for rule in RULES if rule not in used]
    assert unused == []


def test_a_task_reads_its_kind_only_when_it_failed() -> None:
    def task(status: str, reason: str, data: Any = None) -> Task:
        body = {"status": status, "fail_reason": reason, "data": data}
        return msgspec.json.decode(msgspec.json.encode(body), type=Task)

    assert task("FAILURE", "任务超时（1440分钟）").failure_kind is TO
    # On SUCCESS fail_reason is a copy of the URL: no kind.
    assert task("SUCCESS", "https://cdn.example/v.mp4").failure_kind is None
    assert task("IN_PROGRESS", "", {"code": "InternalError"}).failure_kind is None
    # A newer gateway repeats the error text in result_url: it is the reason then.
    failed = msgspec.json.decode(
        b'{"status": "FAILURE", "result_url": "Input data may contain inappropriate content."}',
        type=Task,
    )
    assert failed.failure_kind is CP
    assert FailureKind.UPSTREAM_ERROR.retryable
    assert FailureKind.TIMED_OUT.retryable
    assert not any(k.retryable for k in (CP, II, QU, UN))


def test_the_docs_list_every_rule_with_its_source() -> None:
    page = (Path(__file__).parent.parent / "docs" / "statuses.md").read_text()
    for rule in RULES:
        for source in re.split(r";\s*", rule.source):
            url = source.split(" ")[0].rstrip(",")
            assert url in page, f"{rule.provider}: {url} is not cited"
    for kind in FailureKind:
        assert f"`{kind.name}`" in page


@pytest.mark.virtual_time
@pytest.mark.parametrize("provider", ["dashscope", "seedance", "kling"])
@pytest.mark.parametrize("kind", list(FailureKind))
async def test_the_fake_scripts_each_kind_and_the_client_reads_it_back(
    provider: str, kind: FailureKind
) -> None:
    """Through real HTTP: the fake's failure of each kind, with the provider's real code and
    message, comes back as a TaskFailedError of that kind, which its message shows."""
    async with FakeAnyFast() as server, AnyFast(server.api_key, base_url=server.base_url) as client:
        server.add_task("t1", stages=server.failure_stages(kind=kind, provider=provider))
        with pytest.raises(TaskFailedError) as caught:
            await client.wait("t1", poll_interval=1)
    assert caught.value.kind is kind
    assert caught.value.task.failure_kind is kind
    assert f"({kind.value})" in str(caught.value)


def test_the_fake_refuses_what_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="provider"):
        FakeAnyFast.failure_stages(kind="quota", provider="nobody")
    with pytest.raises(ValueError, match="kind"):
        FakeAnyFast.failure_stages(kind="bad luck")
    with pytest.raises(ValueError, match="then"):
        FakeAnyFast.upstream_error_stages(then="later")  # type: ignore[arg-type]


@pytest.mark.virtual_time
async def test_wait_many_groups_the_failed_ids_by_kind() -> None:
    async with FakeAnyFast() as server, AnyFast(server.api_key, base_url=server.base_url) as client:
        server.add_task("ok")
        server.add_task("nsfw1", stages=server.failure_stages(kind="content_policy"))
        server.add_task("down", stages=server.failure_stages(kind="upstream_error"))
        server.add_task(
            "nsfw2", stages=server.failure_stages(kind="content_policy", provider="kling")
        )
        outcomes = await client.wait_many(["ok", "nsfw1", "down", "nsfw2"], poll_interval=1)
    assert outcomes.by_kind() == {CP: ["nsfw1", "nsfw2"], UE: ["down"]}
    assert list(outcomes.by_kind()) == [CP, UE]  # most common first
    failed = outcomes["nsfw1"]
    assert isinstance(failed, TaskFailedError)
    as_dict = failed.task.to_dict()
    assert (as_dict["failure_kind"], as_dict["upstream_error"]) == ("content_policy", None)
    queued = msgspec.json.decode(
        b'{"status": "QUEUED", "data": {"code": "Throttling", "message": "slow down"}}', type=Task
    )
    assert queued.to_dict()["upstream_error"] == {"code": "Throttling", "message": "slow down"}
