"""A task store on Redis: the records of :mod:`._store`, kept where many processes can reach
them, and the leases by which a fleet shares the polling of its tasks.

Layout (``ns`` is the namespace), every key declared to the scripts that touch it:

- ``ns:rec``, a hash: one JSON record per task (``intent:<id>`` for a create whose answer has
  not come), with the fields of :class:`~anyfast_async.TaskRecord` and, while a process holds
  the task, its lease ``token``;
- ``ns:due``, a sorted set of the tasks being watched, scored in milliseconds of Redis's own
  clock: when someone should next look at the task. A task claimed by a process is scored at
  its lease's end, so a task whose holder died is simply due again: no sweeper, no heartbeat.

Every change is a Lua script reading the time from Redis (``TIME``), never from a client:
clocks of different machines never meet. Writes are queued and sent as one script call per
batch (one round trip for everything queued meanwhile); an awaited write returns once Redis
has answered, which with ``appendfsync always`` means once it is on disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import uuid
from typing import Any, Final

import msgspec
import yarl

from ._store import StoreError, TaskRecord, WriteQueue

__all__ = ["Claim", "RedisStore"]

logger = logging.getLogger("anyfast_async")

#: Operations sent in one script call at most.
_BATCH: Final = 2048

_LIB: Final = """
local rec = KEYS[1]
local due = KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local nowms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function get(key)
  local v = redis.call('HGET', rec, key)
  if v then return cjson.decode(v) end
  return nil
end
local function put(key, r) redis.call('HSET', rec, key, cjson.encode(r)) end
local function blank(v) return v == nil or v == cjson.null end
"""

# ARGV[1]: a JSON array of operations, each [name, ...]; returns a JSON array of errors.
_APPLY: Final = (
    _LIB
    + """
local ops = cjson.decode(ARGV[1])
local errors = {}
for i, op in ipairs(ops) do
  local kind, key = op[1], op[2]
  local r = nil
  local err = cjson.null
  if kind == 'intend' then
    put('intent:' .. key, {intent_id = key, model = op[3], body_sha256 = op[4],
                           state = 'creating', status = '', created_at = now})
  elseif kind == 'created' then
    r = get('intent:' .. key)
    if r == nil then
      local made = get(op[3])
      if made == nil or made.intent_id ~= key then err = 'no create ' .. key end
    else
      redis.call('HDEL', rec, 'intent:' .. key)
      local old = get(op[3])
      if old ~= nil and not blank(old.deadline) then r.deadline = old.deadline end
      r.task_id = op[3]
      r.state = 'watching'
      put(op[3], r)
      redis.call('ZADD', due, 'NX', nowms, op[3])
    end
  elseif kind == 'create_failed' then
    r = get('intent:' .. key)
    if r ~= nil and op[3] then
      r.state = 'unknown'
      r.error = op[4]
      put('intent:' .. key, r)
    else
      redis.call('HDEL', rec, 'intent:' .. key)
    end
  elseif kind == 'watching' then
    r = get(key) or {task_id = key, status = '', created_at = now}
    if not blank(op[4]) then
      local origins = r.origins or {}
      local known = false
      for _, o in ipairs(origins) do if o == op[4] then known = true end end
      if not known then origins[#origins + 1] = op[4] end
      r.origins = origins
    end
    if r.state == 'finished' then
      -- Its outcome is final: told to the process now waiting for it (at once if recorded;
      -- else with the others, when its holder records it).
      put(key, r)
      if not blank(op[4]) and not blank(r.outcome) then
        redis.call('XADD', KEYS[3] .. op[4], 'MAXLEN', '~', 100000, '*', 'task', key,
                   'outcome', r.outcome)
        redis.call('EXPIRE', KEYS[3] .. op[4], 86400)
      end
    else
      r.state = 'watching'
      if blank(r.deadline) then r.deadline = op[3] end
      put(key, r)
      redis.call('ZADD', due, 'NX', nowms, key)
    end
  elseif kind == 'status' then
    r = get(key)
    if r ~= nil then r.status = op[3]; put(key, r) end
  elseif kind == 'finished' then
    -- Until its outcome is handled, a finished task stays due at its lease's end: if its
    -- holder dies first, another process takes it and delivers the outcome again.
    r = get(key) or {task_id = key, created_at = now}
    r.state = 'finished'
    r.status = op[3]
    r.error = op[4]
    r.finished_at = now
    if op[5] then
      r.handled_at = now
      r.token = nil
      redis.call('ZREM', due, key)
    else
      r.handled_at = nil
    end
    put(key, r)
  elseif kind == 'handled' then
    r = get(key)
    if r ~= nil and r.state == 'finished' then
      r.handled_at = now
      r.token = nil
      put(key, r)
      redis.call('ZREM', due, key)
    end
  elseif kind == 'downloaded' then
    r = get(key)
    if r ~= nil then r.download_path = op[3]; put(key, r) end
  elseif kind == 'download_failed' then
    r = get(key)
    if r ~= nil then r.error = op[3]; put(key, r) end
  elseif kind == 'notify' then
    r = get(key)
    if r ~= nil then
      r.outcome = op[4]
      put(key, r)
    end
    if r ~= nil and r.origins then
      for _, origin in ipairs(r.origins) do
        if origin ~= op[3] then
          redis.call('XADD', KEYS[3] .. origin, 'MAXLEN', '~', 100000, '*', 'task', key,
                     'outcome', op[4])
          redis.call('EXPIRE', KEYS[3] .. origin, 86400)
        end
      end
    end
  elseif kind ~= 'flush' then
    err = 'unknown operation ' .. tostring(kind)
  end
  errors[i] = err
end
return cjson.encode(errors)
"""
)

# ARGV: how many at most, the lease in ms, a random nonce. Returns id, token, id, token, ...
_CLAIM: Final = (
    _LIB
    + """
local ids = redis.call('ZRANGEBYSCORE', due, '-inf', nowms, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for i, id in ipairs(ids) do
  local r = get(id)
  local unhandled = r ~= nil and r.state == 'finished' and blank(r.handled_at)
  if r == nil or (r.state ~= 'watching' and not unhandled) then
    redis.call('ZREM', due, id)
  else
    r.token = ARGV[3] .. ':' .. i
    put(id, r)
    redis.call('ZADD', due, nowms + tonumber(ARGV[2]), id)
    out[#out + 1] = id
    out[#out + 1] = r.token
    if blank(r.deadline) then out[#out + 1] = '' else out[#out + 1] = tostring(r.deadline) end
    if unhandled then out[#out + 1] = '1' else out[#out + 1] = '' end
  end
end
return out
"""
)

# ARGV[1]: the lease in ms, or -1 to give the tasks back (due again after ARGV[2] ms); then
# id, token pairs. Returns the ids whose token no longer holds (another process took them).
_RENEW: Final = (
    _LIB
    + """
local lease = tonumber(ARGV[1])
local stale = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local r = get(id)
  if r == nil or r.token ~= token or (r.state ~= 'watching' and not blank(r.handled_at)) then
    stale[#stale + 1] = id
  elseif lease >= 0 then
    redis.call('ZADD', due, 'XX', nowms + lease, id)
  else
    r.token = nil
    put(id, r)
    redis.call('ZADD', due, 'XX', nowms + tonumber(ARGV[2]), id)
  end
end
return stale
"""
)


# The fleet's pause. ARGV[1]: milliseconds to pause for (0: only read). Extends, never
# shortens. Returns the milliseconds left.
_PAUSE: Final = """
local left = redis.call('PTTL', KEYS[1])
if left < 0 then left = 0 end
local wanted = tonumber(ARGV[1])
if wanted > left then
  redis.call('SET', KEYS[1], '1', 'PX', wanted)
  left = wanted
end
return left
"""


class Claim(msgspec.Struct, frozen=True):
    """A task a process holds for the length of a lease: its id, the lease's token (only
    the holder of the current token may renew or give it back), the task's deadline (Unix
    seconds, or ``None``), and whether it had finished but its outcome was not handled (its
    holder died first: it is polled again and its outcome delivered again)."""

    task_id: str
    token: str
    deadline: float | None = None
    redeliver: bool = False


class _Stored(msgspec.Struct, kw_only=True):
    """A record as the scripts keep it (absent fields are None)."""

    task_id: str | None = None
    intent_id: str | None = None
    model: str = ""
    body_sha256: str | None = None
    state: str = "watching"
    status: str = ""
    created_at: float = 0.0
    deadline: float | None = None
    finished_at: float | None = None
    error: str | None = None
    handled_at: float | None = None
    download_path: str | None = None
    token: str | None = None


def _redacted(url: str) -> str:
    """The URL without its password."""
    parsed = yarl.URL(url)
    return str(parsed.with_password("***")) if parsed.password else url


class RedisStore:
    """A task store on Redis, for many processes and machines (``pip install
    'anyfast-async[redis]'``).

    It keeps the records a :class:`SQLiteStore` keeps, in a hash and a sorted set under
    ``namespace``, and hands out the tasks being watched under leases (:meth:`claim`,
    :meth:`renew`, :meth:`give_back`): a task is held by one process at a time, and a process
    that dies without giving its tasks back loses them when their leases run out.

    For nothing to be lost when Redis restarts, run it with ``appendonly yes`` and
    ``appendfsync always`` (each reply then waits for the write to be on disk) and
    ``maxmemory-policy noeviction``.

    Args:
        url: The Redis URL (``redis://[:password@]host:port/db``); its password is never
            shown.
        namespace: The prefix of every key (several fleets can share one Redis).
        lease: Seconds a claimed task stays held without :meth:`renew`.
        poll: Whether a watcher of this process polls tasks for the fleet; ``False`` for a
            process that only adds tasks and waits for them (a web app's replicas).
        hold: Most tasks a watcher of this process holds and polls at a time.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "anyfast",
        lease: float = 30.0,
        poll: bool = True,
        hold: int = 1000,
    ) -> None:
        if not lease > 0:
            raise ValueError(f"lease must be > 0, got {lease!r}")
        if hold < 1:
            raise ValueError(f"hold must be >= 1, got {hold!r}")
        self.poll = poll
        """Whether this process polls tasks for the fleet (else it only adds and waits)."""
        self.hold = hold
        """Most tasks this process holds (and polls) at a time."""
        if not namespace or "{" in namespace or "}" in namespace:
            raise ValueError(f"namespace must be a non-empty name without braces: {namespace!r}")
        self._url = url
        self.namespace = namespace
        """The prefix of every key."""
        self.lease = lease
        """Seconds a claimed task stays held without renewal."""
        self._keys = [f"{namespace}:rec", f"{namespace}:due", f"{namespace}:inbox:"]
        self.origin = secrets.token_hex(8)
        """This store's name in the fleet: tasks it adds are answered to its inbox."""
        self._redis: Any = None
        self._reader: Any = None
        self._away: tuple[type[BaseException], ...] = (OSError,)
        self._scripts: dict[str, Any] = {}
        self._writes = WriteQueue(
            self._apply, batch=_BATCH, name="anyfast-async redis store writer"
        )

    def __repr__(self) -> str:
        state = "open" if self._redis is not None else "closed"
        return f"RedisStore({_redacted(self._url)!r}, namespace={self.namespace!r}, {state})"

    # -- opening and closing -------------------------------------------------------------------

    async def open(self) -> None:
        """Connect to Redis (checking that it answers) and start the writer."""
        if self._redis is not None:
            raise RuntimeError("the store is already open")
        try:
            import redis.asyncio
            import redis.exceptions
        except ImportError:  # pragma: no cover (the extra is installed where this runs)
            raise StoreError(
                "RedisStore needs the redis package: pip install 'anyfast-async[redis]'"
            ) from None
        client = redis.asyncio.Redis.from_url(self._url, decode_responses=True)
        try:
            await client.ping()
        except Exception as exc:
            await client.aclose()
            raise StoreError(
                f"cannot reach Redis at {_redacted(self._url)}: {type(exc).__name__}"
            ) from None
        self._redis = client
        self._away = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        # Blocking reads get a connection of their own, and a socket timeout beyond them.
        self._reader = redis.asyncio.Redis.from_url(
            self._url, decode_responses=True, socket_timeout=30
        )
        self._scripts = {
            name: client.register_script(source)
            for name, source in (
                ("apply", _APPLY),
                ("claim", _CLAIM),
                ("renew", _RENEW),
                ("pause", _PAUSE),
            )
        }
        self._writes.start()

    async def aclose(self) -> None:
        """Write what is queued, then disconnect."""
        client = self._redis
        if client is None:
            return
        await self._writes.close()
        self._redis = None
        reader, self._reader = self._reader, None
        await client.aclose()
        if reader is not None:
            await reader.aclose()

    async def __aenter__(self) -> RedisStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- writing ---------------------------------------------------------------------------

    async def _write(self, *op: Any) -> None:
        """Queue one operation and wait until Redis has applied it."""
        await self._writes.write(list(op))

    def _write_soon(self, *op: Any) -> None:
        """Queue one operation; it is sent with the next batch."""
        self._writes.write_soon(list(op))

    async def _apply(self, batch: list[list[Any]]) -> list[BaseException | None]:
        """One script call for the batch; each operation's error. While Redis is away (a
        restart, a failover) the batch waits for it, and so do its callers: every operation
        can be applied twice."""
        payload = msgspec.json.encode(batch).decode()
        delay = 0.1
        while True:
            try:
                reply = await self._scripts["apply"](keys=self._keys, args=[payload])
            except self._away as exc:
                logger.warning(
                    "the Redis store is unreachable (%s); retrying in %.1f s",
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            except Exception as exc:  # refused by Redis: every caller hears of it
                raise StoreError(f"the Redis store failed: {type(exc).__name__}: {exc}") from None
            return [None if e is None else StoreError(str(e)) for e in msgspec.json.decode(reply)]

    # -- what the client records ---------------------------------------------------------------

    async def intend(self, body: bytes) -> str:
        """Record a create about to be sent; return its intent id, applied on return.

        Args:
            body: The create call's JSON body (its ``model`` is recorded, and a hash of it).
        """
        intent = uuid.uuid4().hex
        try:
            model = str(msgspec.json.decode(body).get("model", ""))
        except (msgspec.DecodeError, AttributeError):
            model = ""
        await self._write("intend", intent, model, hashlib.sha256(body).hexdigest())
        return intent

    async def created(self, intent_id: str, task_id: str) -> None:
        """The create of ``intent_id`` made ``task_id``: a task to watch.

        Args:
            intent_id: What :meth:`intend` returned.
            task_id: The id of the task it created.
        """
        await self._write("created", intent_id, task_id)

    async def create_failed(self, intent_id: str, *, maybe_created: bool, error: str) -> None:
        """The create of ``intent_id`` failed: forgotten if it surely made no task, else
        kept as ``"unknown"``.

        Args:
            intent_id: What :meth:`intend` returned.
            maybe_created: Whether the request may have reached the server and made a task.
            error: What went wrong.
        """
        await self._write("create_failed", intent_id, maybe_created, error)

    def watching(self, task_id: str, deadline: float | None) -> None:
        """A watch of ``task_id`` begins (queued): due at once, first deadline kept.

        Args:
            task_id: The task's id.
            deadline: When the watch times out, in Unix seconds, or ``None``.
        """
        self._write_soon("watching", task_id, deadline, self.origin)

    def status(self, task_id: str, status: str) -> None:
        """A new status was seen (queued).

        Args:
            task_id: The task's id.
            status: The raw status.
        """
        self._write_soon("status", task_id, status)

    async def finished(
        self, task_id: str, status: str, error: str | None, *, handled: bool = False
    ) -> None:
        """The task's watch ended: it is no longer due, and its lease is gone.

        Args:
            task_id: The task's id.
            status: The last raw status seen (``""`` if none).
            error: Why it did not succeed, or ``None``.
            handled: Record the outcome as handled at once.
        """
        await self._write("finished", task_id, status, error, handled)

    async def handled(self, task_id: str) -> None:
        """``on_terminal`` returned for the task's outcome.

        Args:
            task_id: The task's id.
        """
        await self._write("handled", task_id)

    async def downloaded(self, task_id: str, path: str) -> None:
        """The task's video was saved.

        Args:
            task_id: The task's id.
            path: Where it was saved.
        """
        await self._write("downloaded", task_id, path)

    async def download_failed(self, task_id: str, error: str) -> None:
        """The task's video could not be saved.

        Args:
            task_id: The task's id.
            error: Why.
        """
        await self._write("download_failed", task_id, error)

    async def notify(self, task_id: str, outcome: bytes) -> None:
        """Tell the process that added ``task_id`` (if not this one) how it ended.

        Args:
            task_id: The task's id.
            outcome: The outcome, encoded (see the fleet).
        """
        await self._write("notify", task_id, self.origin, outcome.decode())

    async def inbox(self, after: str, *, block: float) -> list[tuple[str, str, bytes]]:
        """The outcomes told to this store since the message ``after`` (``"0"``: all),
        waiting up to ``block`` seconds for one: (message id, task id, outcome).

        Args:
            after: The id of the last message read.
            block: Seconds to wait when there is none yet.
        """
        if self._reader is None:
            raise RuntimeError("the store is not open")
        stream = self._keys[2] + self.origin
        reply = await self._reader.xread({stream: after}, block=round(block * 1000), count=1000)
        found = []
        for _, messages in reply or ():
            for message_id, fields in messages:
                found.append((message_id, fields["task"], fields["outcome"].encode()))
        return found

    async def read(self, upto: str) -> None:
        """Forget the inbox's messages up to ``upto`` (read and handled).

        Args:
            upto: The id of the last message handled.
        """
        if self._reader is not None:
            await self._reader.xtrim(self._keys[2] + self.origin, minid=upto)
            await self._reader.xdel(self._keys[2] + self.origin, upto)

    async def flush(self) -> None:
        """Wait until every write queued so far is applied."""
        await self._write("flush", "")

    # -- leases ----------------------------------------------------------------------------------

    async def claim(self, limit: int) -> list[Claim]:
        """Take up to ``limit`` of the tasks that are due (or whose holder's lease ran out)
        for the length of a lease.

        Args:
            limit: Most tasks to take.
        """
        await self.flush()
        nonce = secrets.token_hex(8)
        reply = await self._scripts["claim"](
            keys=self._keys, args=[limit, round(self.lease * 1000), nonce]
        )
        return [
            Claim(
                reply[i],
                reply[i + 1],
                float(reply[i + 2]) if reply[i + 2] else None,
                redeliver=bool(reply[i + 3]),
            )
            for i in range(0, len(reply), 4)
        ]

    async def renew(self, claims: list[Claim]) -> list[str]:
        """Extend the leases of ``claims`` by :attr:`lease`; the ids no longer held (their
        lease ran out and another process took them, or they finished).

        Args:
            claims: What :meth:`claim` gave.
        """
        return await self._lease(claims, round(self.lease * 1000), 0)

    async def give_back(self, claims: list[Claim], *, after: float = 0.0) -> list[str]:
        """End the leases of ``claims``: the tasks are due again ``after`` seconds from now
        (for whichever process claims them); the ids that were no longer held.

        Args:
            claims: What :meth:`claim` gave.
            after: Seconds until they are due again.
        """
        return await self._lease(claims, -1, round(after * 1000))

    async def pause(self, seconds: float = 0.0) -> float:
        """Pause the whole fleet's polling for ``seconds`` (a 429 one process was answered),
        unless a longer pause is on; the seconds the fleet's pause has left (``pause()``
        only reads it).

        Args:
            seconds: How long to pause from now.
        """
        if self._redis is None:
            raise RuntimeError("the store is not open")
        left: int = await self._scripts["pause"](
            keys=[f"{self.namespace}:pause"], args=[max(0, round(seconds * 1000))]
        )
        return left / 1000

    async def _lease(self, claims: list[Claim], lease_ms: int, after_ms: int) -> list[str]:
        if self._redis is None:
            raise RuntimeError("the store is not open")
        args: list[Any] = [lease_ms, after_ms]
        for claim in claims:
            args += [claim.task_id, claim.token]
        stale: list[str] = await self._scripts["renew"](keys=self._keys, args=args)
        return stale

    # -- reading ------------------------------------------------------------------------------

    async def tasks(self, *, unfinished: bool = False, unhandled: bool = False) -> list[TaskRecord]:
        """The records, oldest first (after every write queued so far).

        Args:
            unfinished: Only tasks still to be watched.
            unhandled: Only finished tasks whose outcome ``on_terminal`` has not handled.
        """
        await self.flush()
        raw: dict[str, str] = await self._redis.hgetall(self._keys[0])
        decoder = msgspec.json.Decoder(_Stored)
        records = []
        for value in raw.values():
            stored = decoder.decode(value)
            if unfinished or unhandled:
                keep = (unfinished and stored.state == "watching") or (
                    unhandled and stored.state == "finished" and stored.handled_at is None
                )
                if not keep:
                    continue
            records.append((stored.created_at, _record(stored)))
        records.sort(key=lambda item: item[0])
        return [record for _, record in records]


def _record(stored: _Stored) -> TaskRecord:
    return TaskRecord(
        task_id=stored.task_id,
        intent_id=stored.intent_id,
        model=stored.model,
        state=stored.state,
        status=stored.status,
        created_at=stored.created_at,
        deadline=stored.deadline,
        finished_at=stored.finished_at,
        error=stored.error,
        handled=stored.handled_at is not None,
        download_path=stored.download_path,
        body_sha256=stored.body_sha256,
    )
