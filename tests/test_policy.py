"""PollPolicy cadence and the shared polling budget (Pacer), with a fake clock."""

from __future__ import annotations

import random

import pytest

from anyfast_async import (
    BadRequestError,
    PollPolicy,
    RateLimitError,
    RetryPolicy,
    TaskNotFoundError,
    TaskStatus,
    Throttle,
)
from anyfast_async._budget import Pacer
from anyfast_async._retry import retry_delay


def test_default_cadence() -> None:
    """Running tasks poll every 15 s; waiting ones ramp from 15 s to 30 s; jitter is 10 %."""
    policy = PollPolicy()
    rng = random.Random(1)
    running = [policy.next_delay(TaskStatus.IN_PROGRESS, n, rng) for n in range(1, 200)]
    assert all(13.5 <= d <= 16.5 for d in running)
    assert 14.5 < sum(running) / len(running) < 15.5
    exact = PollPolicy(jitter=0)
    waits = [exact.next_delay(TaskStatus.QUEUED, n, rng) for n in range(1, 8)]
    assert waits[0] == 15.0
    assert waits == sorted(waits)
    assert waits[-1] == 30.0
    assert exact.next_delay(TaskStatus.NOT_START, 3, rng) == pytest.approx(15 * 1.25**2)
    assert exact.next_delay(TaskStatus.UNKNOWN, 9, rng) == 15.0


def test_fixed_policy() -> None:
    """fixed(s) polls every s seconds whatever the status, with no jitter."""
    policy = PollPolicy.fixed(2)
    rng = random.Random(0)
    for status in TaskStatus:
        for n in (1, 5, 50):
            assert policy.next_delay(status, n, rng) == 2.0
    assert PollPolicy.fixed(0.01, not_found_grace=0).not_found_grace == 0
    with pytest.raises(ValueError, match="interval"):
        PollPolicy.fixed(0)


def test_error_backoff_grows_and_is_capped() -> None:
    """Failed polls back off exponentially, between half and all of the ceiling."""
    policy = PollPolicy(error_backoff=2, max_error_backoff=60)
    rng = random.Random(3)
    for streak, ceiling in [(1, 2), (2, 4), (3, 8), (6, 60), (30, 60)]:
        delay = policy.error_delay(streak, rng)
        assert ceiling / 2 <= delay <= ceiling


@pytest.mark.parametrize(
    "changes",
    [{"interval": -1}, {"jitter": 1.5}, {"waiting_ramp": 0.5}, {"not_found_grace": -1}],
)
def test_invalid_policies(changes: dict[str, float]) -> None:
    """Nonsense values are refused."""
    with pytest.raises(ValueError, match="PollPolicy"):
        PollPolicy(**changes)


def test_invalid_throttle() -> None:
    """A throttle whose pauses or rates make no sense is refused."""
    with pytest.raises(ValueError, match="Throttle"):
        Throttle(initial_pause=5, max_pause=1)
    with pytest.raises(ValueError, match="Throttle"):
        Throttle(min_rate=0)


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(time: FakeTime, max_rate: float | None = None, **throttle: float) -> Pacer:
    return Pacer(Throttle(**throttle), max_rate=max_rate, sleep=time.sleep, clock=time.clock)


@pytest.mark.anyio
async def test_unthrottled_pacer_never_waits() -> None:
    """With no 429 and no max_rate, acquiring costs no wait."""
    time = FakeTime()
    p = pacer(time)
    for _ in range(1000):
        await p.acquire()
        p.succeeded()
    assert time.sleeps == []
    assert p.rate_cap is None


@pytest.mark.anyio
async def test_max_rate_spaces_requests() -> None:
    """max_rate=10 spaces request starts 0.1 s apart."""
    time = FakeTime()
    p = pacer(time, max_rate=10)
    start = time.now
    for _ in range(11):
        await p.acquire()
    assert time.now - start == pytest.approx(1.0)


@pytest.mark.anyio
async def test_429_pauses_and_halves_the_rate() -> None:
    """A 429 pauses new requests and caps the rate at half what was observed."""
    time = FakeTime()
    p = pacer(time, initial_pause=1.0, max_pause=8.0, min_rate=1.0)
    for _ in range(100):  # 100 requests over 1 s
        await p.acquire()
        time.now += 0.01
    p.throttled(None)
    assert p.throttles == 1
    assert p.rate_cap == pytest.approx(50, rel=0.1)
    before = time.now
    await p.acquire()
    assert time.now - before == pytest.approx(1.0), "the pause is waited out"


@pytest.mark.anyio
async def test_429s_in_one_pause_are_one_episode() -> None:
    """Several 429s within a pause escalate once; a new episode doubles the pause."""
    time = FakeTime()
    p = pacer(time, initial_pause=1.0, max_pause=3.0)
    p.throttled(None)
    p.throttled(None)
    p.throttled(None)
    assert p.paused_until == pytest.approx(time.now + 1.0)
    time.now += 1.5
    p.throttled(None)
    assert p.paused_until == pytest.approx(time.now + 2.0)
    time.now += 2.5
    p.throttled(None)
    assert p.paused_until == pytest.approx(time.now + 3.0), "capped at max_pause"


@pytest.mark.anyio
async def test_retry_after_sets_the_pause() -> None:
    """Retry-After is the pause, capped at max_pause; a later one can extend it."""
    time = FakeTime()
    p = pacer(time, max_pause=10.0)
    p.throttled(4.0)
    assert p.paused_until == pytest.approx(time.now + 4.0)
    p.throttled(6.0)
    assert p.paused_until == pytest.approx(time.now + 6.0)
    p.throttled(100.0)
    assert p.paused_until == pytest.approx(time.now + 10.0)


@pytest.mark.anyio
async def test_rate_recovers_gradually() -> None:
    """After throttling stops, the cap climbs by 5 % per success until it is lifted."""
    time = FakeTime()
    p = pacer(time, min_rate=1.0, recovery=0.05)
    p.throttled(None)
    low = p.rate_cap
    assert low is not None
    p.succeeded()
    assert p.rate_cap == pytest.approx(low * 1.05)
    for _ in range(1000):
        p.succeeded()
    assert p.rate_cap is None


@pytest.mark.anyio
async def test_rate_recovers_to_max_rate() -> None:
    """With max_rate, recovery stops at max_rate."""
    time = FakeTime()
    p = pacer(time, max_rate=20)
    p.throttled(None)
    assert p.rate_cap is not None
    assert p.rate_cap < 20
    for _ in range(500):
        p.succeeded()
    assert p.rate_cap == 20


def test_invalid_max_rate() -> None:
    """max_rate must be positive."""
    time = FakeTime()
    with pytest.raises(ValueError, match="max_rate"):
        pacer(time, max_rate=0)


@pytest.mark.anyio
async def test_a_pause_holds_waiters_under_a_rate_cap() -> None:
    """A 429 while a poll waits for its slot makes it wait out the pause too."""
    time = FakeTime()
    p = pacer(time, max_rate=1, initial_pause=5.0, max_pause=5.0)
    await p.acquire()  # takes the slot at t=100; the next is at t=101

    async def sleep_then_throttle(seconds: float) -> None:
        time.sleeps.append(seconds)
        time.now += seconds
        if len(time.sleeps) == 1:
            p.throttled(None)  # a 429 lands while we wait for the slot

    p._sleep = sleep_then_throttle
    await p.acquire()
    assert time.now >= 106.0, "no request during the pause that began while waiting"


@pytest.mark.anyio
async def test_a_cancelled_waiter_gives_its_slot_back() -> None:
    """Slots reserved by waiters that were cancelled do not delay later requests."""
    import anyio

    clock = FakeTime()

    async def real_sleep(seconds: float) -> None:
        await anyio.sleep(seconds)

    p = Pacer(Throttle(), max_rate=2, sleep=real_sleep, clock=clock.clock)
    await p.acquire()
    with anyio.move_on_after(0.05):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(p.acquire)
    assert p._next - clock.now <= 0.5 + 1e-9


def test_penalty_starts_afresh_after_a_quiet_spell() -> None:
    """Two 429s far apart are not consecutive: the pause does not keep doubling."""
    time = FakeTime()
    p = pacer(time, initial_pause=1.0, max_pause=8.0)
    p.throttled(None)
    time.now += 2
    p.throttled(None)
    assert p.paused_until == pytest.approx(time.now + 2.0)
    time.now += 3600
    p.throttled(None)
    assert p.paused_until == pytest.approx(time.now + 1.0)


def test_throttling_never_raises_the_cap_above_max_rate() -> None:
    """min_rate does not lift the cap above the caller's own max_rate."""
    time = FakeTime()
    p = pacer(time, max_rate=0.5, min_rate=1.0)
    p.throttled(None)
    assert p.rate_cap == 0.5


# -- the one retry decision -------------------------------------------------------------------


def _throttled(retry_after: float | None) -> RateLimitError:
    return RateLimitError("slow down", status_code=429, retry_after=retry_after)


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(None, 5.0), (2.0, 5.0), (7.0, 7.0), (600.0, 60.0)],
)
def test_retry_delay_is_the_backoff_or_a_longer_retry_after(
    retry_after: float | None, expected: float
) -> None:
    """The wait after a failure is the policy's backoff, never shorter than the server's
    Retry-After, which is capped."""
    delay = retry_delay(
        _throttled(retry_after),
        3,
        backoff=lambda attempt, rng: attempt + 2.0,
        max_retry_after=60.0,
        rng=random.Random(0),
    )
    assert delay == expected


def test_retry_delay_refuses_what_is_not_transient() -> None:
    """A failure that another try cannot help is not retried (None), whatever it asked."""
    refused = BadRequestError("no", status_code=400, retry_after=1.0)
    assert (
        retry_delay(refused, 1, backoff=lambda a, r: 1.0, max_retry_after=60, rng=random.Random())
        is None
    )
    gone = TaskNotFoundError("gone", status_code=400, code="task_not_exist")
    assert (
        retry_delay(gone, 1, backoff=lambda a, r: 1.0, max_retry_after=60, rng=random.Random())
        is None
    )
    assert (
        retry_delay(
            gone,
            1,
            backoff=lambda a, r: 1.0,
            max_retry_after=60,
            rng=random.Random(),
            retryable=lambda exc: True,
        )
        == 1.0
    )


def test_both_policies_feed_the_same_decision() -> None:
    """RetryPolicy.backoff and PollPolicy.error_delay are the backoffs retry_delay takes: full
    jitter up to the ceiling for a request, half to all of it for a poll."""
    rng = random.Random(1)
    request = [RetryPolicy().backoff(3, rng) for _ in range(200)]
    assert 0 <= min(request) < 0.5
    assert max(request) <= 2.0
    polls = [PollPolicy().error_delay(3, rng) for _ in range(200)]
    assert min(polls) >= 4.0
    assert max(polls) <= 8.0
    assert (
        retry_delay(
            _throttled(30.0), 3, backoff=PollPolicy().error_delay, max_retry_after=60, rng=rng
        )
        == 30.0
    )
