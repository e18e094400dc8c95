"""PollPolicy cadence and the shared polling budget (Pacer), with a fake clock."""

from __future__ import annotations

import random

import anyio
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


async def polls(p: Pacer, time: FakeTime, count: int, per_second: float) -> None:
    """``count`` polls due at ``per_second``, each taking its slot from the budget."""
    for _ in range(count):
        await p.acquire()
        time.now += 1.0 / per_second


@pytest.mark.anyio
async def test_unthrottled_pacer_never_waits() -> None:
    """With no 429 and no max_rate, acquiring costs no wait."""
    time = FakeTime()
    p = pacer(time)
    for _ in range(1000):
        assert p.try_acquire()
    await p.acquire()
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


async def refuse(p: Pacer, time: FakeTime, count: int) -> None:
    """``count`` 429s answering polls sent 10 ms ago."""
    for _ in range(count):
        p.throttled(None, sent_at=time.now - 0.01)


@pytest.mark.anyio
async def test_the_cap_is_the_rate_the_server_accepts() -> None:
    """A 429 caps the rate at the measured rate times the share not refused: one 429 in a
    hundred polls costs 1 %, a limit that refuses half of them halves the rate (in one round
    trip more); without a Retry-After nothing pauses."""
    time = FakeTime()
    p = pacer(time, initial_pause=1.0, min_rate=1.0)
    await polls(p, time, 100, per_second=100)
    await refuse(p, time, 1)
    assert p.throttles == 1
    assert p.rate_cap == pytest.approx(99, rel=0.02)
    await refuse(p, time, 49)  # sent before the decrease: no further decrease, but counted
    assert p.rate_cap == pytest.approx(99, rel=0.02)
    time.now += 0.02
    await refuse(p, time, 1)  # a poll sent under the new cap is refused too
    assert p.rate_cap == pytest.approx(50, rel=0.05)
    assert p.paused_until <= time.now


@pytest.mark.anyio
async def test_a_first_429_sets_no_cap() -> None:
    """A 429 among too few polls to measure a rate (a fresh client) neither caps nor pauses:
    polling goes on at the rate that is due."""
    time = FakeTime()
    p = pacer(time)
    await p.acquire()
    p.throttled(None)
    assert p.rate_cap is None
    assert p.paused_until <= time.now
    assert p.try_acquire()


async def test_429s_of_unknown_send_time_within_a_second_are_one_decrease() -> None:
    """Without a send time, 429s within a second of a decrease are taken as answers to polls
    sent before it: they decrease nothing more."""
    time = FakeTime()
    p = pacer(time)
    await polls(p, time, 100, per_second=100)
    p.throttled(None)
    first = p.rate_cap
    assert first is not None
    assert first == pytest.approx(99, rel=0.02)
    time.now += 0.5
    for _ in range(60):
        p.throttled(None)
    assert p.rate_cap == pytest.approx(first * 2**0.5, rel=0.02), "grown, not decreased"


async def test_a_storm_brings_the_rate_down_round_trip_by_round_trip() -> None:
    """When every poll is refused, each round trip decreases the cap again, faster as the
    refused share grows: within half a second the rate is a small fraction of what it was."""
    time = FakeTime()
    p = pacer(time, min_rate=1.0)
    await polls(p, time, 100, per_second=100)
    caps: list[float] = []
    started = time.now
    while time.now < started + 0.5:
        await p.acquire()  # a poll under the cap in force ...
        time.now += 0.02
        await refuse(p, time, 1)  # ... refused
        cap = p.rate_cap
        assert cap is not None
        caps.append(cap)
    assert caps == sorted(caps, reverse=True)
    assert caps[-1] < 25


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
    before = time.now
    await p.acquire()
    assert time.now - before == pytest.approx(10.0), "the pause is waited out"


@pytest.mark.anyio
async def test_the_rate_is_back_to_what_is_due_within_seconds() -> None:
    """After one 429 with 100 polls due a second, the cap doubles each second and is lifted
    at twice the rate that drew the 429: within 2 s polling is back at 100 a second."""
    time = FakeTime()
    p = pacer(time)
    await polls(p, time, 100, per_second=100)
    p.throttled(None)
    started = time.now
    done_by_second: list[int] = []
    for second in range(4):
        count = 0
        while time.now < started + second + 1:
            await p.acquire()
            count += 1
            time.now += 0.01  # the next poll is due 10 ms later
        done_by_second.append(count)
    assert done_by_second[0] >= 70  # the cap grows from 50/s to 100/s during the first second
    assert done_by_second[2:] == [100, 100]
    assert p.rate_cap is None


async def test_rate_recovers_to_max_rate() -> None:
    """With max_rate, the cap is lifted once it grows back to max_rate."""
    time = FakeTime()
    p = pacer(time, max_rate=20)
    await polls(p, time, 20, per_second=20)
    await refuse(p, time, 20)
    time.now += 0.02
    await refuse(p, time, 1)
    assert p.rate_cap == pytest.approx(10, rel=0.1)
    time.now += 2.0
    assert p.rate_cap == 20


def test_invalid_max_rate() -> None:
    """max_rate must be positive."""
    time = FakeTime()
    with pytest.raises(ValueError, match="max_rate"):
        pacer(time, max_rate=0)


async def test_throttling_that_persists_at_min_rate_pauses_and_escalates() -> None:
    """429s that keep coming with the cap already near min_rate pause every poll, doubling up
    to max_pause; once the cap has recovered, a new 429 starts afresh."""
    time = FakeTime()
    p = pacer(time, min_rate=1.0, initial_pause=1.0, max_pause=3.0, recovery=0.01)
    await polls(p, time, 16, per_second=16)
    pauses = []
    for _ in range(8):
        await refuse(p, time, 16)
        pauses.append(round(max(p.paused_until - time.now, 0.0), 6))
        time.now += 0.02
    assert p.rate_cap == pytest.approx(1, rel=0.05)
    assert pauses[:2] == [0.0, 0.0], "no pause while the rate can still come down"
    assert [x for x in pauses if x > 0] == [1.0, 2.0, 3.0, 3.0]
    time.now += 3600  # long recovered
    assert p.rate_cap is None
    await polls(p, time, 16, per_second=16)
    await refuse(p, time, 1)
    assert p.paused_until <= time.now


@pytest.mark.anyio
async def test_a_pause_that_begins_while_waiting_holds_the_waiter() -> None:
    """A Retry-After that arrives while a poll waits for its slot makes it wait out the pause."""
    time = FakeTime()

    async def sleep_then_throttle(seconds: float) -> None:
        time.sleeps.append(seconds)
        time.now += seconds
        if len(time.sleeps) == 1:
            p.throttled(5.0)  # a 429 lands while we wait for the slot

    p = Pacer(Throttle(max_pause=5.0), max_rate=1, sleep=sleep_then_throttle, clock=time.clock)
    await p.acquire()  # takes the slot at t=100; the next is at t=101
    await p.acquire()
    assert time.sleeps[0] <= 1.0
    assert time.now >= 100.0 + time.sleeps[0] + 5.0, "no poll during the pause"


@pytest.mark.anyio
async def test_a_cancelled_waiter_takes_nothing() -> None:
    """Waiters that are cancelled leave no slot booked: the next poll starts when the rate
    allows, not after theirs."""
    time = FakeTime()

    async def blocked(seconds: float) -> None:
        time.sleeps.append(seconds)
        await anyio.sleep_forever()

    p = Pacer(Throttle(), max_rate=1, sleep=blocked, clock=time.clock)
    await p.acquire()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(p.acquire)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert len(time.sleeps) == 1, "only the first in the queue waits for the clock"
    time.now += 1.0
    await p.acquire()
    assert len(time.sleeps) == 1, "the slot after a second is free at once"


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


async def test_scattered_429s_at_a_high_rate_cost_their_share() -> None:
    """2 % of 3,000 polls a second refused at random, for 5 s: the rate stays near what is due
    (each second costs about 2 %, the growth wins it back), instead of compounding a decrease
    at every refusal into a collapse."""
    time = FakeTime()
    p = pacer(time, min_rate=1.0)
    started = time.now
    done = 0
    while time.now < started + 5:
        await p.acquire()
        done += 1
        time.now += 1 / 3000
        if done % 50 == 0:
            p.throttled(None, sent_at=time.now - 0.001)
    assert done >= 0.9 * 5 * 3000


async def test_a_cap_left_alone_for_hours_is_simply_lifted() -> None:
    """A cap nobody looks at for a long idle spell is lifted when next read; its growth is
    never computed past the point of lifting (no overflow)."""
    time = FakeTime()
    p = pacer(time)
    await polls(p, time, 100, per_second=100)
    await refuse(p, time, 1)
    assert p.rate_cap is not None
    time.now += 100_000
    assert p.try_acquire()
    assert p.rate_cap is None
