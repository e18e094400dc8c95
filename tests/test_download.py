"""Downloading results: atomic files, the key only for the API's origin, clear expiry errors."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from anyfast_async import (
    AnyFast,
    APIConnectionError,
    Outcomes,
    PollPolicy,
    ResultExpiredError,
    Task,
    TaskFailedError,
)
from anyfast_async.testing import FakeAnyFast, Stage

from .conftest import RecordingSleep

pytestmark = pytest.mark.anyio

VIDEO = os.urandom(300_000)


def done(url: str) -> list[Stage]:
    return [Stage(status="SUCCESS", progress="100%", result_url=url, fail_reason=url)]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_signed_storage_url_gets_no_key(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """A result on another origin is downloaded without the Authorization header."""
    async with FakeAnyFast() as storage:
        url = storage.add_file("v.mp4", VIDEO)
        server.add_task("asyntask_1", stages=done(url))
        path = await client.download("asyntask_1", tmp_path)
    assert path == tmp_path / "asyntask_1.mp4"
    assert path.read_bytes() == VIDEO
    (fetch,) = storage.requests
    assert "Authorization" not in fetch.headers
    assert leftovers(tmp_path) == ["asyntask_1.mp4"]


async def test_api_origin_proxy_gets_the_key(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """A result on the API's own origin (its content proxy) is fetched with the key."""
    server.add_file("proxied.mp4", VIDEO)
    server.add_task("t1", stages=done("/files/proxied.mp4"))
    target = tmp_path / "out.mp4"
    assert await client.download("t1", target) == target
    assert target.read_bytes() == VIDEO
    fetch = [r for r in server.requests if r.path.startswith("/files/")]
    assert fetch[0].headers["Authorization"] == f"Bearer {server.api_key}"


async def test_redirect_to_storage_drops_the_key(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """The API proxy redirecting to storage: the storage request carries no key."""
    async with FakeAnyFast() as storage:
        url = storage.add_file("v.mp4", VIDEO)
        server.add_file("proxy.mp4", b"", redirect_to=url)
        server.add_task("t1", stages=done(f"{server.base_url}/files/proxy.mp4"))
        path = await client.download("t1", tmp_path)
    assert path.read_bytes() == VIDEO
    assert "Authorization" not in storage.requests[0].headers


async def test_expired_url_names_the_expiry(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """A 403 from storage is ResultExpiredError, explains the 24 h expiry, leaves no file."""
    url = server.add_file("old.mp4", VIDEO, expired=True)
    server.add_task("t1", stages=done(url))
    with pytest.raises(ResultExpiredError, match="expire 24 hours") as info:
        await client.download("t1", tmp_path)
    assert info.value.status_code == 403
    assert "Request has expired" in info.value.body
    assert leftovers(tmp_path) == []


async def test_connection_dropped_mid_body(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep, tmp_path: Path
) -> None:
    """A body cut off is retried from the start; when it keeps failing, no file is left."""
    url = server.add_file("cut.mp4", VIDEO, drop_after=100_000)
    server.add_task("t1", stages=done(url))
    with pytest.raises(APIConnectionError):
        await client.download("t1", tmp_path)
    assert len(sleep.calls) == 3
    assert leftovers(tmp_path) == []


async def test_short_body_is_detected(server: FakeAnyFast, client: AnyFast, tmp_path: Path) -> None:
    """Fewer bytes than Content-Length is an error, not a truncated video."""
    url = server.add_file("short.mp4", VIDEO, wrong_length=True)
    server.add_task("t1", stages=done(url))
    with pytest.raises(APIConnectionError):
        await client.download("t1", tmp_path / "x.mp4")
    assert leftovers(tmp_path) == []


async def test_existing_file_is_replaced_only_on_success(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """A failed download leaves an earlier file untouched; a good one replaces it."""
    target = tmp_path / "v.mp4"
    target.write_bytes(b"old")
    bad = server.add_file("bad.mp4", VIDEO, expired=True)
    server.add_task("t1", stages=done(bad))
    with pytest.raises(ResultExpiredError):
        await client.download("t1", target)
    assert target.read_bytes() == b"old"
    good = server.add_file("good.mp4", VIDEO)
    server.add_task("t2", stages=done(good))
    await client.download("t2", target)
    assert target.read_bytes() == VIDEO


async def test_progress_callback(server: FakeAnyFast, client: AnyFast, tmp_path: Path) -> None:
    """The progress callback sees growing byte counts and the total."""
    url = server.add_file("v.mp4", VIDEO)
    server.add_task("t1", stages=done(url))
    seen: list[tuple[int, int | None]] = []

    async def progress(done_bytes: int, total: int | None) -> None:
        seen.append((done_bytes, total))

    await client.download("t1", tmp_path, progress=progress)
    assert seen[-1] == (len(VIDEO), len(VIDEO))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


async def test_failed_or_unfinished_tasks(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """A failed task raises TaskFailedError; an unfinished one ValueError; nothing is fetched."""
    server.add_task("bad", stages=[Stage(status="FAILURE", fail_reason="moderation")])
    server.add_task("busy", stages=[Stage(status="IN_PROGRESS")])
    with pytest.raises(TaskFailedError):
        await client.download("bad", tmp_path)
    with pytest.raises(ValueError, match="no result"):
        await client.download("busy", tmp_path)
    assert leftovers(tmp_path) == []


async def test_only_http_urls(server: FakeAnyFast, client: AnyFast, tmp_path: Path) -> None:
    """A result URL that is not http(s) is never followed."""
    task = Task(raw_status="SUCCESS", task_id="t1", raw_result_url="file:///etc/passwd")
    assert task.result_url is None
    with pytest.raises(ValueError, match="no result"):
        await client.download(task, tmp_path)


async def test_wait_many_downloads_as_tasks_succeed(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """wait_many(download_to=...) downloads each success; an expired URL becomes its outcome."""
    async with FakeAnyFast() as storage:
        ids = []
        for i in range(5):
            url = storage.add_file(f"v{i}.mp4", VIDEO[: 1000 * (i + 1)], expired=(i == 4))
            server.add_task(f"t{i}", stages=[Stage(status="QUEUED"), *done(url)])
            ids.append(f"t{i}")
        server.add_task("failing", stages=[Stage(status="FAILURE")])
        results = await client.wait_many(
            [*ids, "failing"], poll=PollPolicy.fixed(0.005), download_to=tmp_path
        )
    for i in range(4):
        assert isinstance(results[f"t{i}"], Task)
        assert (tmp_path / f"t{i}.mp4").read_bytes() == VIDEO[: 1000 * (i + 1)]
    assert isinstance(results["t4"], ResultExpiredError)
    assert isinstance(results["failing"], TaskFailedError)
    assert leftovers(tmp_path) == [f"t{i}.mp4" for i in range(4)]
    # Where each video went, handed back: only the downloads that were written.
    assert results.files == {f"t{i}": tmp_path / f"t{i}.mp4" for i in range(4)}


async def test_odd_task_ids_make_safe_file_names(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """A task id with path characters cannot escape the destination folder."""
    url = server.add_file("v.mp4", VIDEO)
    server.add_task("../../etc/x", stages=done(url))
    path = await client.download("../../etc/x", tmp_path)
    assert path.parent == tmp_path
    assert path.name == "_.._etc_x.mp4"


async def test_download_to_a_missing_folder(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """wait_many(download_to=...) creates the folder and puts each result in it."""
    folder = tmp_path / "videos"
    for i in range(3):
        server.add_task(f"t{i}", stages=done(server.add_file(f"v{i}.mp4", bytes([i]) * 100)))
    server.add_task("no_url", stages=[Stage(status="SUCCESS")])
    results = await client.wait_many(
        ["t0", "t1", "t2", "no_url"], poll=PollPolicy.fixed(0.005), download_to=folder
    )
    assert all(isinstance(r, Task) for r in results.values())
    assert leftovers(folder) == ["t0.mp4", "t1.mp4", "t2.mp4"]
    assert (folder / "t2.mp4").read_bytes() == bytes([2]) * 100
    assert list(results.files) == ["t0", "t1", "t2"]  # no file for a success without a URL


async def test_downloaded_file_mode_follows_umask(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """A downloaded video gets the usual mode for new files, not the temporary 0600."""
    server.add_task("t1", stages=done(server.add_file("v.mp4", VIDEO)))
    umask = os.umask(0o022)
    try:
        path = await client.download("t1", tmp_path)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


async def test_key_echoed_in_a_download_error_is_redacted(tmp_path: Path) -> None:
    """The API's content proxy echoing the key in an error: the key is not in the error."""
    from anyfast_async import APIStatusError
    from anyfast_async.testing import Fault

    secret = "sk-download-SECRET-0123456789"
    async with FakeAnyFast(api_key=secret) as server:
        server.add_task("t1", stages=done("/files/v.mp4"))
        server.add_file("v.mp4", VIDEO)
        async with AnyFast(secret, base_url=server.base_url) as client:
            task = await client.get_task("t1")
            server.inject(Fault.http(401, {"error": {"message": f"bad key Bearer {secret}"}}))
            with pytest.raises(APIStatusError) as info:
                await client.download(task, tmp_path)
    assert "[redacted]" in str(info.value) + info.value.body
    assert secret not in str(info.value)
    assert secret not in info.value.body


async def test_redirect_to_a_non_http_url_is_refused(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """A redirect to file:// is not followed: APIConnectionError, nothing written."""
    server.add_file("v.mp4", b"", redirect_to="file:///etc/passwd")
    server.add_task("t1", stages=done(f"{server.base_url}/files/v.mp4"))
    with pytest.raises(APIConnectionError, match="only http"):
        await client.download("t1", tmp_path)
    assert leftovers(tmp_path) == []


async def test_wait_many_refuses_no_room_for_downloads(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """download_concurrency below 1 is refused before anything is sent (0 would wait forever)."""
    server.add_task("t1")
    with pytest.raises(ValueError, match="download_concurrency"):
        await client.wait_many(["t1"], download_to=tmp_path / "out", download_concurrency=0)
    assert server.requests == []
    assert not (tmp_path / "out").exists()


async def test_a_video_already_downloaded_is_kept(
    server: FakeAnyFast, client: AnyFast, tmp_path: Path
) -> None:
    """wait_many and the watcher keep a video already in the folder (files get there only
    whole) instead of fetching it again; skip_existing=False fetches it; client.download
    fetches unless asked to skip."""
    async with FakeAnyFast() as storage:
        for name in ("a", "b"):
            server.add_task(name, stages=done(storage.add_file(f"{name}.mp4", VIDEO)))
        (tmp_path / "a.mp4").write_bytes(b"kept")
        results = await client.wait_many(["a", "b"], download_to=tmp_path, poll_interval=0.01)
        assert results.files == {"a": tmp_path / "a.mp4", "b": tmp_path / "b.mp4"}
        assert (tmp_path / "a.mp4").read_bytes() == b"kept"
        assert (tmp_path / "b.mp4").read_bytes() == VIDEO
        assert [r.path.split("?")[0] for r in storage.requests] == ["/files/b.mp4"]

        async with client.watcher(download_to=tmp_path, poll_interval=0.01) as watcher:
            await watcher.add("a").wait()
        assert len(storage.requests) == 1, "the watcher fetched nothing"

        assert await client.download("a", tmp_path, skip_existing=True) == tmp_path / "a.mp4"
        assert len(storage.requests) == 1
        await client.wait_many(["a"], download_to=tmp_path, poll_interval=0.01, skip_existing=False)
        assert (tmp_path / "a.mp4").read_bytes() == VIDEO
        assert len(storage.requests) == 2


@pytest.mark.virtual_time
async def test_wait_many_fills_results_as_tasks_end(server: FakeAnyFast, client: AnyFast) -> None:
    """results= is filled as each task ends, so a call cancelled midway keeps what it
    learned."""
    server.add_task("quick", stages=done("https://cdn.example/q.mp4"))
    server.add_task("stuck", stages=[Stage(status="QUEUED")])
    results = Outcomes()
    with anyio.move_on_after(60):
        await client.wait_many(["quick", "stuck"], poll_interval=1, results=results)
    assert list(results) == ["quick"]
    assert isinstance(results["quick"], Task)
