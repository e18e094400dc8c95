"""Secrets stay secret, and configuration mistakes get clear errors."""

from __future__ import annotations

import logging
import warnings

import pytest

from anyfast_async import (
    AnyFast,
    AnyFastError,
    APIStatusError,
    InsecureBaseURLWarning,
    PollPolicy,
    TextToVideo,
    Timeout,
)
from anyfast_async.testing import FakeAnyFast, Fault, Stage

from .conftest import everything_shown
from .test_faults import CASES

pytestmark = pytest.mark.anyio

SECRET = "sk-RECOGNISABLE-0f9e8d7c6b5a4321"
FAST = PollPolicy.fixed(0.005, not_found_grace=0.0)


@pytest.mark.virtual_time
async def test_key_absent_from_every_error_path(caplog: pytest.LogCaptureFixture) -> None:
    """Every fault, auth failure and create failure, with DEBUG logs: the key shows nowhere."""
    caplog.set_level(logging.DEBUG)
    shown: list[str] = []

    async with FakeAnyFast(api_key=SECRET) as server:
        async with AnyFast(
            SECRET,
            base_url=server.base_url,
            timeout=Timeout(total=0.3, read=0.1),
            max_retries=1,
        ) as client:
            shown.append(repr(client))
            for case in CASES:
                server.clear_faults()
                server.add_task(case.name)
                server.inject(case.fault, times=10)
                for attempt in (
                    client.get_task(case.name),
                    client.wait(case.name, poll=FAST, timeout=0.2),
                ):
                    try:
                        await attempt
                    except AnyFastError as exc:
                        shown.append(everything_shown(exc))
            server.clear_faults()
            for state in ("quota_exhausted", "forbidden"):
                server.set_key_state(state)
                with pytest.raises(APIStatusError) as info:
                    await client.get_task("t")
                shown.append(everything_shown(info.value))
            server.set_key_state("ok")
            for fault in (Fault.drop_connection(), Fault.empty(500), Fault.slow(1.0)):
                server.inject(fault)
                with pytest.raises(AnyFastError) as info2:
                    await client.create(TextToVideo(prompt="x"))
                shown.append(everything_shown(info2.value))
                server.clear_faults()
        async with AnyFast("sk-wrong", base_url=server.base_url) as other:
            with pytest.raises(APIStatusError) as info3:
                await other.get_task("t")
            shown.append(everything_shown(info3.value))
    shown += [r.getMessage() for r in caplog.records]
    shown += [repr(r.args) for r in caplog.records]
    assert len(shown) > 50
    assert [text for text in shown if SECRET in text] == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_never_carry_the_key_elsewhere(status: int) -> None:
    """A redirect to another origin is not followed, for a poll or a create."""
    async with FakeAnyFast(api_key=SECRET) as api, FakeAnyFast(api_key=SECRET) as elsewhere:
        api.add_task("t1")
        async with AnyFast(SECRET, base_url=api.base_url, max_retries=0) as client:
            api.inject(
                Fault(status=status, body=b"", headers={"Location": elsewhere.url_for("t1")})
            )
            with pytest.raises(APIStatusError) as info:
                await client.get_task("t1")
            api.inject(
                Fault(
                    status=status,
                    body=b"",
                    headers={"Location": f"{elsewhere.base_url}/v1/video/generations"},
                )
            )
            with pytest.raises(APIStatusError):
                await client.create(TextToVideo(prompt="x"))
        assert info.value.status_code == status
        assert elsewhere.requests == []


async def test_key_sent_only_as_the_bearer_header() -> None:
    """The key travels in the Authorization header only: not in the URL or the body."""
    async with FakeAnyFast(api_key=SECRET) as server:
        server.add_task("t1", stages=[Stage(status="SUCCESS")])
        async with AnyFast(SECRET, base_url=server.base_url) as client:
            await client.get_task("t1")
            await client.create(TextToVideo(prompt="x"))
    for request in server.requests:
        assert SECRET not in request.path
        assert SECRET.encode() not in request.body
        assert [k for k, v in request.headers.items() if SECRET in v] == ["Authorization"]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:9000", "http://127.9.9.9"]
)
def test_plain_http_allowed_on_this_machine(url: str) -> None:
    """http:// to a loopback address (a test server) is accepted quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AnyFast("sk-x", base_url=url)


@pytest.mark.parametrize("url", ["http://www.anyfast.ai", "http://10.0.0.5:8080", "http://proxy"])
def test_plain_http_elsewhere_is_warned(url: str) -> None:
    """http:// to any other host warns that the key would travel unencrypted."""
    with pytest.warns(InsecureBaseURLWarning, match="not https"):
        AnyFast("sk-x", base_url=url)


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "empty"),
        ("  \n", "empty"),
        ("sk-abc\r\nX-Injected: yes", "whitespace or control"),
        ("sk abc", "whitespace or control"),
        ("sk-\tabc", "whitespace or control"),
    ],
)
def test_bad_keys(key: str, fragment: str) -> None:
    """An empty key or one that could inject a header is refused, without echoing it."""
    with pytest.raises(ValueError, match=fragment) as info:
        AnyFast(key, base_url="http://127.0.0.1:1")
    assert "X-Injected" not in str(info.value)
