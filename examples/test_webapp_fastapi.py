"""Testing a FastAPI app that uses anyfast-async: a pytest module to copy.

The app is examples/webapp_fastapi.py, whose lifespan opens one client and one watcher (and,
with no ANYFAST_API_KEY, a FakeAnyFast of its own). The tests run its lifespan with
asgi-lifespan's ``LifespanManager`` and send requests in the same process with httpx:

    pip install anyfast-async fastapi httpx asgi-lifespan pytest anyio
    pytest examples/test_webapp_fastapi.py

Two ways that do not work in an async test, and why:

* ``fastapi.testclient.TestClient(app)`` runs the app on an event loop of its own, in another
  thread, and blocks the test's loop while it waits for each answer: a FakeAnyFast served by the
  test's loop cannot answer, and the request hangs until a timeout.
* ``httpx.ASGITransport(app=app)`` alone does not run the lifespan, so the client and the
  watcher are never opened. ``LifespanManager`` runs it, and its ``manager.app`` hands the
  lifespan's state to every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from webapp_fastapi import app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def http(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and an httpx client that calls it in-process."""
    monkeypatch.delenv("ANYFAST_API_KEY", raising=False)  # the app's own FakeAnyFast
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://app"
        ) as http,
    ):
        yield http


@pytest.mark.anyio
async def test_a_video_is_created_and_finishes(http: httpx.AsyncClient) -> None:
    created = await http.post("/videos", json={"prompt": "A cat on grass"})
    assert created.status_code == 202
    task_id = created.json()["task_id"]
    answer = (await http.get(f"/videos/{task_id}", params={"wait": 25})).json()
    assert answer["status"] == "SUCCESS"
    assert answer["result_url"].startswith("https://")
    again = (await http.get(f"/videos/{task_id}")).json()  # from the app's store now
    assert again == answer


@pytest.mark.anyio
async def test_a_failed_video_is_an_answer(http: httpx.AsyncClient) -> None:
    created = await http.post("/videos", json={"prompt": "A moderation test"})
    task_id = created.json()["task_id"]
    answer = (await http.get(f"/videos/{task_id}", params={"wait": 25})).json()
    assert answer["status"] == "FAILURE"
    assert answer["error"] == "content moderation"


@pytest.mark.anyio
async def test_only_the_apps_own_videos_are_answered(http: httpx.AsyncClient) -> None:
    answer = await http.get("/videos/asyntask_someone_elses")
    assert answer.status_code == 404
    stats = (await http.get("/stats")).json()
    assert stats["polls"] == 0  # an id the app did not create is never polled
