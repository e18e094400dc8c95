"""Create calls: documented bodies, client-side validation, retry rules, create-then-wait."""

from __future__ import annotations

import gc
import json
import socket
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from anyfast_async import (
    AnyFast,
    AnyFastError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CreatedTask,
    ImageToVideo,
    PollPolicy,
    RateLimitError,
    ReferenceToVideo,
    ResponseDecodeError,
    ServerError,
    SQLiteStore,
    TaskFailedError,
    TaskNotFoundError,
    TaskStatus,
    TaskUpdate,
    TextToVideo,
    Timeout,
    VideoEdit,
)
from anyfast_async.testing import FakeAnyFast, Fault, Stage, check_create_body

from .conftest import RecordingSleep, load

pytestmark = pytest.mark.anyio

FAST = PollPolicy.fixed(0.005)


def posts(server: FakeAnyFast) -> list[dict[str, Any]]:
    """The bodies of the create calls the server received."""
    return [json.loads(r.body) for r in server.requests if r.method == "POST"]


def doc(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(load(name))
    return loaded


# -- bodies ------------------------------------------------------------------------------------


async def test_text_to_video_body_matches_docs(server: FakeAnyFast, client: AnyFast) -> None:
    """t2v sends the documented body, field for field."""
    created = await client.create_text_to_video(
        "A cat running on grass", resolution="720P", ratio="16:9", duration=5, watermark=False
    )
    assert posts(server) == [doc("request_happyhorse_t2v_parameters_object.json")]
    assert created.task_id == server.created[0].task_id
    assert created.model == "happyhorse-1.0-t2v"
    assert created.status == "queued"
    assert created.created_at is not None


async def test_flat_documented_t2v_example_means_the_same(
    server: FakeAnyFast, client: AnyFast
) -> None:
    """The flat example's knobs are what the SDK puts in `parameters`."""
    flat = doc("request_happyhorse_t2v_flat.json")
    await client.create_text_to_video(
        flat["prompt"],
        resolution=flat["resolution"],
        ratio=flat["ratio"],
        duration=flat["duration"],
        watermark=flat["watermark"],
        seed=flat["seed"],
    )
    (sent,) = posts(server)
    knobs = {k: flat[k] for k in ("resolution", "ratio", "duration", "watermark", "seed")}
    assert sent == {"model": flat["model"], "prompt": flat["prompt"], "parameters": knobs}


async def test_image_to_video_body_matches_docs(server: FakeAnyFast, client: AnyFast) -> None:
    """i2v sends the documented body."""
    example = doc("request_happyhorse_i2v_parameters_object.json")
    await client.create_image_to_video(
        example["image"], example["prompt"], resolution="720P", duration=5, watermark=False
    )
    assert posts(server) == [example]


async def test_reference_to_video_body_matches_docs(server: FakeAnyFast, client: AnyFast) -> None:
    """r2v sends the documented body with its three reference images."""
    example = doc("request_happyhorse_r2v.json")
    await client.create_reference_to_video(
        example["images"],
        example["prompt"],
        resolution="720P",
        ratio="16:9",
        duration=5,
        watermark=False,
    )
    assert posts(server) == [example]


async def test_video_edit_body_matches_docs(server: FakeAnyFast, client: AnyFast) -> None:
    """video-edit sends the documented native body (input.media)."""
    example = doc("request_happyhorse_video_edit.json")
    media = {m["type"]: m["url"] for m in example["input"]["media"]}
    await client.create_video_edit(
        media["video"],
        media["reference_image"],
        example["input"]["prompt"],
        resolution="720P",
        watermark=False,
        seed=1073741823,
    )
    assert posts(server) == [example]


async def test_unset_knobs_are_left_out(server: FakeAnyFast, client: AnyFast) -> None:
    """Only what the caller set is sent, so the server's defaults apply."""
    await client.create_text_to_video("A cat")
    await client.create_text_to_video("A dog", seed=0)
    assert posts(server) == [
        {"model": "happyhorse-1.0-t2v", "prompt": "A cat"},
        {"model": "happyhorse-1.0-t2v", "prompt": "A dog", "parameters": {"seed": 0}},
    ]


async def test_create_task_sends_the_body_as_given(server: FakeAnyFast, client: AnyFast) -> None:
    """create_task() passes another model's body through, and reads its empty status."""
    created = await client.create_task("seedance-fast", {"prompt": "x", "resolution": "720p"})
    assert posts(server) == [{"prompt": "x", "resolution": "720p", "model": "seedance-fast"}]
    assert created.status == ""
    assert created.model == "seedance-fast"


@pytest.mark.parametrize(
    "name",
    [
        "create_happyhorse_t2v.json",
        "create_happyhorse_i2v.json",
        "create_happyhorse_video_edit.json",
        "create_seedance_fast.json",
        "create_wan22_t2v_a14b.json",
        "variant_create_wan22_zh_schema_placeholder.json",
    ],
)
async def test_documented_create_answers_decode(
    server: FakeAnyFast, client: AnyFast, name: str
) -> None:
    """Every documented create answer gives a task id (task_id, else id)."""
    body = load(name)
    server.inject(Fault.http(200, body, content_type="application/json"))
    created = await client.create_text_to_video("A cat")
    expected = json.loads(body)
    assert created.task_id == expected.get("task_id") or expected["id"]
    assert created.status == expected["status"]


async def test_create_answer_without_id(server: FakeAnyFast, client: AnyFast) -> None:
    """An answer with no task id is a ResponseDecodeError, not a task with an empty id."""
    server.inject(Fault.http(200, {"object": "video", "status": "queued"}))
    with pytest.raises(ResponseDecodeError, match="no task id"):
        await client.create_text_to_video("A cat")


# -- validation --------------------------------------------------------------------------------

URL = "https://example.com/a.png"


@pytest.mark.parametrize(
    ("kind", "fields", "error", "fragment"),
    [
        (TextToVideo, {"prompt": ""}, ValueError, "prompt"),
        (TextToVideo, {"prompt": "   "}, ValueError, "prompt"),
        (TextToVideo, {"prompt": 3}, TypeError, "prompt"),
        (TextToVideo, {"prompt": "x", "resolution": "4K"}, ValueError, "'720P', '1080P'"),
        (TextToVideo, {"prompt": "x", "resolution": "720p"}, ValueError, "resolution"),
        (TextToVideo, {"prompt": "x", "ratio": "21:9"}, ValueError, "'16:9', '9:16', '1:1'"),
        (TextToVideo, {"prompt": "x", "duration": 2}, ValueError, "between 3 and 15"),
        (TextToVideo, {"prompt": "x", "duration": 16}, ValueError, "between 3 and 15"),
        (TextToVideo, {"prompt": "x", "duration": 5.5}, TypeError, "duration"),
        (TextToVideo, {"prompt": "x", "duration": True}, TypeError, "duration"),
        (TextToVideo, {"prompt": "x", "seed": -1}, ValueError, "0 and 2147483647"),
        (TextToVideo, {"prompt": "x", "seed": 2**31}, ValueError, "seed"),
        (TextToVideo, {"prompt": "x", "watermark": "no"}, TypeError, "watermark"),
        (ImageToVideo, {"image": "ftp://x/a.png", "prompt": "x"}, ValueError, r"http\(s\)"),
        (ImageToVideo, {"image": "a.png", "prompt": "x"}, ValueError, "image"),
        (ReferenceToVideo, {"images": [], "prompt": "x"}, ValueError, "1 to 3"),
        (ReferenceToVideo, {"images": [URL] * 4, "prompt": "x"}, ValueError, "1 to 3"),
        (ReferenceToVideo, {"images": URL, "prompt": "x"}, TypeError, "list"),
        (ReferenceToVideo, {"images": [URL, "x"], "prompt": "x"}, ValueError, r"images\[1\]"),
        (VideoEdit, {"video": "no", "reference_image": URL, "prompt": "x"}, ValueError, "video"),
        (
            VideoEdit,
            {"video": URL, "reference_image": "", "prompt": "x"},
            ValueError,
            "reference_image",
        ),
        (
            VideoEdit,
            {"video": URL, "reference_image": URL, "prompt": "x", "duration": 5},
            ValueError,
            "do not apply",
        ),
    ],
)
def test_validation_names_the_field(
    kind: type[Any], fields: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    """Each documented limit is checked when the request is built, with a clear message."""
    with pytest.raises(error, match=fragment):
        kind(**fields)


async def test_invalid_input_sends_nothing(server: FakeAnyFast, client: AnyFast) -> None:
    """Validation happens before any request: the server sees nothing."""
    with pytest.raises(ValueError, match="duration"):
        await client.create_text_to_video("x", duration=99)
    with pytest.raises(ValueError, match="1 to 3"):
        await client.create_reference_to_video([URL] * 5, "x")
    with pytest.raises(ValueError, match="video"):
        await client.create_video_edit("file:///tmp/v.mp4", URL, "x")
    with pytest.raises(ValueError, match="model"):
        await client.create_task("", {})
    assert server.requests == []


async def test_max_images_is_configurable(server: FakeAnyFast, client: AnyFast) -> None:
    """More than 3 reference images are allowed when asked for (the upstream takes up to 9)."""
    await client.create_reference_to_video([URL] * 5, "x", max_images=9)
    assert len(posts(server)[0]["images"]) == 5


def test_fake_server_validates_like_the_docs() -> None:
    """The fake server refuses what the documented server would."""
    assert check_create_body(doc("request_happyhorse_t2v_flat.json")) is None
    assert check_create_body(doc("request_happyhorse_i2v_flat.json")) is None
    assert check_create_body(doc("request_happyhorse_video_edit.json")) is None
    assert check_create_body({"model": "happyhorse-1.0-t2v"}) == "prompt is required"
    assert "duration" in str(
        check_create_body({"model": "happyhorse-1.0-t2v", "prompt": "x", "duration": 99})
    )
    assert check_create_body({"model": "wan2.2-t2v-a14b"}) is None
    assert check_create_body([1]) == "request body must be a JSON object"


async def test_server_side_refusal_is_bad_request(server: FakeAnyFast, client: AnyFast) -> None:
    """A body the server refuses gives BadRequestError with its reason and request id."""
    with pytest.raises(BadRequestError, match="invalid duration") as info:
        await client.create_task("happyhorse-1.0-t2v", {"prompt": "x", "duration": 99})
    assert info.value.request_id
    assert server.created == []


# -- retry rules -------------------------------------------------------------------------------


async def test_refused_connection_is_retried(sleep: RecordingSleep) -> None:
    """Nothing listening: the request provably never left, so it is tried again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with AnyFast("sk-x", base_url=f"http://127.0.0.1:{port}", sleep=sleep) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.create_text_to_video("A cat")
    assert info.value.sent is False
    assert len(sleep.calls) == 3


@pytest.mark.parametrize("fault", [Fault.rate_limited(retry_after="1"), Fault.empty(503)])
async def test_refused_before_processing_is_retried(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep, fault: Fault
) -> None:
    """429 and 503 mean the server did not process the request: it is sent again, once."""
    server.inject(fault)
    created = await client.create_text_to_video("A cat")
    assert len(posts(server)) == 2
    assert [t.task_id for t in server.created] == [created.task_id]
    assert len(sleep.calls) == 1


async def test_dropped_connection_after_send_is_not_retried(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep
) -> None:
    """The server had the request when the connection dropped: no second POST."""
    server.inject(Fault.drop_connection())
    with pytest.raises(APIConnectionError, match="may or may not have been created") as info:
        await client.create_text_to_video("A cat")
    assert info.value.sent is True
    assert len(posts(server)) == 1
    assert sleep.calls == []


@pytest.mark.virtual_time
async def test_timeout_after_send_is_not_retried(server: FakeAnyFast) -> None:
    """A timeout after sending says the task may exist, and is not retried."""
    server.inject(Fault.slow(1.0))
    async with AnyFast(
        server.api_key, base_url=server.base_url, timeout=Timeout(total=0.1)
    ) as client:
        with pytest.raises(APITimeoutError, match="may or may not have been created"):
            await client.create_text_to_video("A cat")
    with anyio.fail_after(5):  # the server goes on, and does create the task
        while not server.created:
            await anyio.sleep(0.02)
    assert len(posts(server)) == 1


@pytest.mark.parametrize("fault", [Fault.empty(500), Fault.empty(502), Fault.empty(504)])
async def test_other_server_errors_are_not_retried(
    server: FakeAnyFast, client: AnyFast, fault: Fault
) -> None:
    """A 500, 502 or 504 may come after processing: raised at once, saying so."""
    server.inject(fault)
    with pytest.raises(ServerError) as info:
        await client.create_text_to_video("A cat")
    assert info.value.sent is True
    assert len(posts(server)) == 1


# -- whether a failed create may have made a task ----------------------------------------------

LOOK_FIRST = "may or may not have been created: look for it before creating it again"


async def test_a_500_on_create_says_the_task_may_exist(
    server: FakeAnyFast, client: AnyFast
) -> None:
    """The server made the task, then answered 500: the ServerError has sent=True and says to
    look for the task before creating it again; its own fields are the server's answer."""
    server.inject(Fault(status=500))  # the normal create, answered with a 500
    with pytest.raises(ServerError) as info:
        await client.create_text_to_video("A cat")
    error = info.value
    assert error.sent is True
    assert str(error).startswith("HTTP 500")
    assert LOOK_FIRST in str(error)
    assert LOOK_FIRST not in error.message
    assert error.status_code == 500
    assert len(server.created) == 1  # it does exist
    assert len(posts(server)) == 1


async def test_a_400_on_create_says_no_task_was_made(server: FakeAnyFast, client: AnyFast) -> None:
    """A refused body: sent=False, and nothing in the message about looking for a task."""
    with pytest.raises(BadRequestError) as info:
        await client.create_task("happyhorse-1.0-t2v", {"prompt": "x", "duration": 99})
    assert info.value.sent is False
    assert "may or may not" not in str(info.value)
    assert server.created == []


async def test_a_refused_key_on_create_says_no_task_was_made(server: FakeAnyFast) -> None:
    """A 401 is a refusal too: sent=False."""
    async with AnyFast("sk-wrong", base_url=server.base_url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.create_text_to_video("A cat")
    assert info.value.sent is False
    assert server.created == []


async def test_a_429_retried_out_on_create_says_no_task_was_made(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep
) -> None:
    """Every attempt refused with 429 until the retries ran out: sent=False."""
    server.inject(Fault.rate_limited(retry_after="1"), times=4)
    with pytest.raises(RateLimitError) as info:
        await client.create_text_to_video("A cat")
    assert info.value.sent is False
    assert "may or may not" not in str(info.value)
    assert len(posts(server)) == 4
    assert len(sleep.calls) == 3
    assert server.created == []


async def test_a_503_retried_out_on_create_says_no_task_was_made(
    server: FakeAnyFast, client: AnyFast, sleep: RecordingSleep
) -> None:
    """A 503 is a refusal before processing (a create is retried on it): when the retries
    run out, sent=False, and a store forgets the create rather than keep it as unknown."""
    server.inject(Fault.server_error(503), times=4)
    with pytest.raises(ServerError) as info:
        await client.create_text_to_video("A cat")
    assert info.value.status_code == 503
    assert info.value.sent is False
    assert "may or may not" not in str(info.value)
    assert len(posts(server)) == 4
    assert server.created == []


async def test_a_refused_connection_on_create_says_no_task_was_made(
    sleep: RecordingSleep,
) -> None:
    """Nothing listening, retried out: sent=False, and no note about looking for the task."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with AnyFast("sk-x", base_url=f"http://127.0.0.1:{port}", sleep=sleep) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.create_text_to_video("A cat")
    assert info.value.sent is False
    assert info.value.retryable is True
    assert "may or may not" not in str(info.value)


async def test_an_unreadable_create_answer_says_the_task_may_exist(
    server: FakeAnyFast, client: AnyFast
) -> None:
    """A 200 whose body cannot be read may have been the task's answer: sent=True."""
    server.inject(Fault.not_json(200))
    with pytest.raises(ResponseDecodeError) as info:
        await client.create_text_to_video("A cat")
    assert info.value.sent is True
    assert LOOK_FIRST in str(info.value)
    assert len(posts(server)) == 1


async def test_a_dropped_connection_on_create_is_no_longer_retryable(
    server: FakeAnyFast, client: AnyFast
) -> None:
    """A connection error after sending is marked not retryable: sending again could make a
    second task."""
    server.inject(Fault.drop_connection())
    with pytest.raises(APIConnectionError) as info:
        await client.create_text_to_video("A cat")
    assert (info.value.sent, info.value.retryable) == (True, False)
    assert info.value.message == str(info.value)
    assert str(info.value).count(LOOK_FIRST) == 1


@pytest.mark.parametrize(
    ("fault", "sent", "state"),
    [(Fault(status=500), True, "unknown"), (Fault.http(400), False, None)],
    ids=["500", "400"],
)
async def test_sent_agrees_with_the_store(
    server: FakeAnyFast, tmp_path: Path, fault: Fault, sent: bool, state: str | None
) -> None:
    """What a failed create's error says and what the store keeps of it follow one rule: a
    create that may have made a task is kept as unknown, one that surely did not is dropped."""
    server.inject(fault)
    store = SQLiteStore(tmp_path / "tasks.db")
    async with AnyFast(server.api_key, base_url=server.base_url, store=store) as client:
        with pytest.raises(APIStatusError) as info:
            await client.create_text_to_video("A cat")
        assert info.value.sent is sent
        records = await store.tasks()
    assert [r.state for r in records] == ([] if state is None else [state])


async def test_errors_not_from_a_create_keep_their_sent(
    server: FakeAnyFast, client: AnyFast
) -> None:
    """Outside a create, ``sent`` keeps its meaning: the request may have reached the server
    (True, the default, for an answer), False only for a connection never made."""
    with pytest.raises(TaskNotFoundError) as info:
        await client.get_task("ghost")
    assert info.value.sent is True
    assert "may or may not" not in str(info.value)
    assert AnyFastError("x").sent is True
    assert APIConnectionError("x", sent=False).sent is False


# -- create, then wait -------------------------------------------------------------------------


async def test_create_and_wait_success(server: FakeAnyFast, client: AnyFast) -> None:
    """create_and_wait hands the id to on_created before waiting, then returns the result."""
    seen: list[str] = []

    async def remember(created: CreatedTask) -> None:
        assert server.polls(created.task_id) == 0, "called before any poll"
        seen.append(created.task_id)

    task = await client.create_and_wait(TextToVideo(prompt="A cat"), on_created=remember, poll=FAST)
    assert task.status is TaskStatus.SUCCESS
    assert seen == [task.task_id]
    assert task.result_url is not None


async def test_create_and_wait_failure(server: FakeAnyFast, client: AnyFast) -> None:
    """A generation that fails raises TaskFailedError carrying the created task's id."""
    server.create_stages = FakeAnyFast.failure_stages("moderation")
    ids: list[str] = []
    with pytest.raises(TaskFailedError) as info:
        await client.create_and_wait(
            ImageToVideo(image=URL, prompt="x"),
            on_created=lambda c: ids.append(c.task_id),
            poll=FAST,
        )
    assert info.value.task.task_id == ids[0]
    assert info.value.reason == "moderation"


async def test_create_and_watch_yields_the_id_first(server: FakeAnyFast, client: AnyFast) -> None:
    """create_and_watch yields the CreatedTask first, then the updates to the end."""
    events = [e async for e in client.create_and_watch(TextToVideo(prompt="x"), poll=FAST)]
    assert isinstance(events[0], CreatedTask)
    updates = events[1:]
    assert all(isinstance(u, TaskUpdate) for u in updates)
    assert isinstance(updates[-1], TaskUpdate)
    assert updates[-1].succeeded
    assert {u.task_id for u in updates if isinstance(u, TaskUpdate)} == {events[0].task_id}


async def test_create_and_watch_checks_its_arguments_at_the_call(
    server: FakeAnyFast, client: AnyFast
) -> None:
    """Like watch(), create_and_watch() refuses bad arguments when called, before any create
    is sent, and not only once iterated."""
    with pytest.raises(ValueError, match="poll= or poll_interval="):
        client.create_and_watch(TextToVideo(prompt="x"), poll=FAST, poll_interval=1)
    with pytest.raises(ValueError, match="timeout"):
        client.create_and_watch(TextToVideo(prompt="x"), timeout=0)
    closed = AnyFast(server.api_key, base_url=server.base_url)
    with pytest.raises(RuntimeError, match="not open"):
        closed.create_and_watch(TextToVideo(prompt="x"))
    assert server.created == []


async def test_create_and_watch_as_a_context_manager(server: FakeAnyFast, client: AnyFast) -> None:
    """create_and_watch() works with `async with`: leaving it stops polling at once, and a
    stream closed before its first step sends no create."""
    async with client.create_and_watch(TextToVideo(prompt="x"), poll=FAST) as events:
        created = await events.__anext__()
        assert isinstance(created, CreatedTask)
        first = await events.__anext__()
        assert isinstance(first, TaskUpdate)
        assert first.task_id == created.task_id
    polls = server.polls(created.task_id)
    assert [e async for e in events] == []  # closed: nothing more
    assert server.polls(created.task_id) == polls
    async with client.create_and_watch(TextToVideo(prompt="y")):
        pass
    assert len(server.created) == 1


async def test_not_found_right_after_create_is_ridden_out(
    server: FakeAnyFast, client: AnyFast
) -> None:
    """The gateway's brief task_not_exist right after a create does not end the wait."""
    created = await client.create_text_to_video("x")
    server.inject(Fault.task_not_exist(), times=3, task_id=created.task_id)
    task = await client.wait(created.task_id, poll=FAST)
    assert task.status is TaskStatus.SUCCESS


async def test_create_and_watch_hands_back_a_task_created_while_it_was_closed(
    server: FakeAnyFast, client: AnyFast
) -> None:
    """A stream closed while its create call is in flight still hands back the CreatedTask
    (the task exists and is paid for), then ends; a second step during the create is refused."""
    server.latency = 1.0  # the create stays on the wire while the test acts
    events = client.create_and_watch(TextToVideo(prompt="x"), poll=FAST)
    got: list[object] = []

    async def first() -> None:
        got.append(await events.__anext__())

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        while server.in_flight == 0:  # the create has reached the server
            await anyio.lowlevel.checkpoint()
        with pytest.raises(RuntimeError, match="still under way"):
            await events.__anext__()
        await events.aclose()
    assert isinstance(got[0], CreatedTask)
    assert got[0].task_id == server.created[0].task_id
    assert [e async for e in events] == []
    assert server.polls(got[0].task_id) == 0


async def test_streams_dropped_unread_leave_nothing_open(
    server: FakeAnyFast, client: AnyFast
) -> None:
    """A watch that is never iterated, or a create_and_watch left after its CreatedTask, is
    collected without an unclosed stream (which would warn, and fail this suite)."""
    server.add_task("t1")
    client.watch("t1", poll=FAST)
    async for event in client.create_and_watch(TextToVideo(prompt="x"), poll=FAST):
        assert isinstance(event, CreatedTask)
        break
    gc.collect()
    await anyio.lowlevel.checkpoint()
    assert server.polls("t1") == 0


@pytest.mark.virtual_time
async def test_a_throttled_create_does_not_slow_polling(server: FakeAnyFast) -> None:
    """A 429 on a create is the create's business (its own retries honour the Retry-After):
    the polling budget is neither paused nor capped by it, since the gateway's create and
    query routes need not share a limit."""
    server.inject(Fault.rate_limited(retry_after="30"))
    async with AnyFast(server.api_key, base_url=server.base_url, max_retries=0) as client:
        with pytest.raises(RateLimitError):
            await client.create_text_to_video("x")
        server.add_tasks(100, stages=[Stage(status="QUEUED", polls=3), Stage(status="SUCCESS")])
        async with client.watcher(poll=FAST) as watcher:
            with anyio.fail_after(20):  # a 30 s pause of the budget would end this
                for handle in watcher.add_many(server.tasks):
                    await handle.wait()
            stats = watcher.statistics()
    assert stats.throttles == 0
    assert stats.rate_cap is None
    assert stats.succeeded == 100
