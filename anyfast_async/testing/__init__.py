"""An in-process fake of the AnyFast task-query endpoint, for your tests.

:class:`FakeAnyFast` is a real :mod:`aiohttp` server bound to ``127.0.0.1`` on an ephemeral port.
It answers ``GET /v1/video/generations/{task_id}`` the way the AnyFast gateway does: the
``{"code","message","data"}`` envelope, Go-style JSON bytes (``&``, ``<``, ``>`` escaped as
``\\u0026`` ...), an ``X-Oneapi-Request-Id`` header on every answer, HTTP 401/403 auth errors in the
OpenAI error shape, HTTP 400 ``task_not_exist`` for unknown ids and HTTP 404 for malformed paths.
Each task walks through a list of :class:`Stage` objects, either one stage per poll or by elapsed
time on an injectable clock, and :class:`Fault` objects make chosen answers misbehave (HTTP
errors, HTML pages, slow answers, dropped connections, truncated bodies...).

Example::

    import aiohttp
    from anyfast_async.testing import FakeAnyFast, Fault

    async def test_polling() -> None:
        async with FakeAnyFast(api_key="test-key") as server:
            task = server.add_task("asyntask_demo")  # NOT_START -> ... -> SUCCESS
            server.inject(Fault.rate_limited(retry_after=2), times=1)
            headers = {"Authorization": f"Bearer {server.api_key}"}
            async with aiohttp.ClientSession() as session:
                async with session.get(server.url_for(task.task_id), headers=headers) as resp:
                    assert resp.status == 429 and resp.headers["Retry-After"] == "2"
                async with session.get(server.url_for(task.task_id), headers=headers) as resp:
                    body = await resp.json()
            assert body["data"]["status"] == "NOT_START"
            assert server.polls("asyntask_demo") == 2

The module depends only on the standard library, :mod:`aiohttp` and :mod:`msgspec`.
"""

from __future__ import annotations

from ._create_check import check_create_body as check_create_body
from ._faults import Fault
from ._lifecycle import DEFAULT_RESULT_URL as DEFAULT_RESULT_URL
from ._lifecycle import TERMINAL_STATUSES as TERMINAL_STATUSES
from ._lifecycle import FakeTask, Stage
from ._server import FakeAnyFast, RecordedRequest
from ._server import KeyState as KeyState
from ._virtual import VirtualTimeLoop
from ._wire import CREATE_PATH as CREATE_PATH
from ._wire import ERROR_CT as ERROR_CT
from ._wire import FILES_PREFIX as FILES_PREFIX
from ._wire import JSON_CT as JSON_CT
from ._wire import QUERY_PREFIX as QUERY_PREFIX
from ._wire import go_json as go_json
from ._wire import new_request_id as new_request_id

__all__ = ["FakeAnyFast", "FakeTask", "Fault", "RecordedRequest", "Stage", "VirtualTimeLoop"]
