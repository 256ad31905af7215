"""`RedisStorage`: where shared state lives, and the one way riprap talks to it.

Why a class of its own: a limiter or breaker with `storage=` needs a sync client (for
`try_acquire`, `with`, sync decorators) and, for the async paths, an async client bound to the
running event loop; both with socket timeouts (redis-py's defaults are 5 s and ten retries with
backoff, so a dead Redis would stall every call for a minute). `RedisStorage` holds those
clients, the key prefix, the timeouts, and the "Redis is down, do not try again yet" state that
every primitive using it shares. A URL string given as `storage=` becomes one of these, cached by
URL so that many primitives share one connection pool.

Failure handling, in one place (`run` / `arun`):

* `NOSCRIPT` (after a failover, a restart or `SCRIPT FLUSH`): load the script and retry once
  (vutran1710/PyrateLimiter#182).
* `READONLY` (a replica promoted away under us): drop the pool's connections, so the next call
  reconnects; this call is a storage error.
* A script error on a server that refuses `TIME` in scripts (some managed services): a
  `ValueError` saying to use `time_source="client"`; that is configuration, not an outage.
* Any other Redis or socket error is a storage error: the caller applies its
  `on_storage_error` mode, and for `retry_interval` seconds every call skips Redis and goes
  straight to that mode (so an outage costs one timeout, not one per call). After that, the
  next call tries Redis again; recovery is automatic.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import urllib.parse
import weakref
from collections.abc import Sequence
from typing import Any

from .. import _validate as v
from .._fork import track

__all__ = ["RedisStorage", "Script", "StorageError", "storage_of"]

logger = logging.getLogger("riprap")

#: Socket and connect timeouts of the clients riprap makes (seconds).
DEFAULT_SOCKET_TIMEOUT = 0.25
DEFAULT_CONNECT_TIMEOUT = 0.25
#: How long after a storage error calls skip Redis (seconds).
DEFAULT_RETRY_INTERVAL = 1.0

_SCHEMES = ("redis", "rediss", "unix")


_redis: Any = None
#: What a call to Redis can raise that is the storage's failure (set with the first import).
_ERRORS: tuple[type[BaseException], ...] = (OSError,)


def _import_redis() -> Any:
    """The redis package (imported once, on first use: it is an optional dependency)."""
    global _redis, _ERRORS
    if _redis is None:
        try:
            import redis  # noqa: PLC0415
            import redis.asyncio  # noqa: PLC0415
        except ImportError:
            raise ImportError(
                "storage= needs the redis package: pip install 'riprap[redis]'"
            ) from None
        _ERRORS = (redis.exceptions.RedisError, OSError)
        _redis = redis
    return _redis


class Script:
    """A Lua script and its SHA1 (what `EVALSHA` names it by)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class StorageError(Exception):
    """Internal: the storage failed, or is presumed down (`skipped`).

    `__cause__` is the Redis error (for a skip, the one that started the outage).
    """

    def __init__(self, message: str, *, skipped: bool = False) -> None:
        super().__init__(message)
        self.skipped = skipped


def redact(url: str) -> str:
    """`url` with its password replaced by `***` (any user name kept).

    It works on URLs that do not parse (a bad port, say), so even an error message about the
    URL cannot leak it.
    """
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def _describe(client: Any) -> str:
    """A client, named by its type and address (never its password)."""
    kind = f"{type(client).__module__}.{type(client).__qualname__}"
    kwargs = _connection_kwargs(client) or {}
    where = ", ".join(
        f"{k}={kwargs[k]}" for k in ("host", "port", "db", "path") if k in kwargs
    )
    return f"{kind}({where})"


def _connection_kwargs(client: Any) -> dict[str, Any] | None:
    get = getattr(client, "get_connection_kwargs", None)
    if get is None:
        return None
    try:
        kwargs = get()
    except Exception:
        return None
    return kwargs if isinstance(kwargs, dict) else None


def _check_timeouts(field: str, client: Any) -> None:
    """A client without socket timeouts would let a dead Redis hang every call: refuse it."""
    kwargs = _connection_kwargs(client)
    if kwargs is None:
        return  # a cluster client or a stand-in: nothing to inspect
    for option in ("socket_timeout", "socket_connect_timeout"):
        if option in kwargs and kwargs[option] is None:
            raise ValueError(
                f"{field} has no {option}: a Redis that stops answering would hang every "
                f"call; create it with {option}=<seconds> (riprap's default is "
                f"{DEFAULT_SOCKET_TIMEOUT})"
            )


def _positive(field: str, value: object) -> float:
    return v.check_float(field, v.number(field, value), 0.0, False)


_RLOCK = type(threading.RLock())


class RedisStorage:
    """Shared state in Redis: `storage=` of `RateLimiter`, `KeyedRateLimiter`, `CircuitBreaker`.

    Give a URL (`redis://[[user]:password@]host:port/db`, `rediss://` for TLS, `unix://`), and
    riprap makes a sync client and, per event loop, an async client, with the timeouts below and
    no retries of their own. Or give your own redis-py clients: `client=` a `redis.Redis` (or
    `redis.cluster.RedisCluster`) for the sync paths, `async_client=` a `redis.asyncio.Redis`
    for the async ones. With only a sync client, async calls run it in a worker thread (correct,
    but slower: pass both for speed); with only an async client, sync calls raise TypeError.
    Your clients must have socket timeouts (else ValueError); their own retry policy, if any,
    adds to the time a call can take when Redis is down.

    Nothing connects at construction: the first call that needs Redis does.

    Args:
        url: The server's URL (its password never appears in logs, stats, reprs or errors).
        client: A sync redis-py client (instead of `url`).
        async_client: An async redis-py client (instead of `url`).
        prefix: The first part of every key (default "riprap"): `riprap:{name}:...`.
        socket_timeout: Seconds a command may take before it is a storage error (default 0.25;
            for riprap's own clients).
        connect_timeout: Seconds a connection may take (default 0.25; riprap's own clients).
        retry_interval: After a storage error, calls skip Redis for this many seconds and
            apply `on_storage_error` at once (default 1.0); then Redis is tried again.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: object = None,
        async_client: object = None,
        prefix: str = "riprap",
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
    ) -> None:
        redis = _import_redis()
        self._socket_timeout = _positive("socket_timeout", socket_timeout)
        self._connect_timeout = _positive("connect_timeout", connect_timeout)
        self._retry_interval = v.check_float(
            "retry_interval", v.number("retry_interval", retry_interval), 0.0, True
        )
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
        if "{" in prefix or "}" in prefix:
            raise ValueError(
                f"prefix must not contain '{{' or '}}' (they mark hash tags), got {prefix!r}"
            )
        self._prefix = prefix
        self._url: str | None = None
        self._sync: Any = None
        self._async: Any = None
        self._pool: Any = None  # the sync client's pool, when riprap made the client
        self._async_by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, Any
        ] = weakref.WeakKeyDictionary()
        if url is not None:
            if client is not None or async_client is not None:
                raise TypeError("give either url or client/async_client, not both")
            self._init_url(redis, url)
        elif client is None and async_client is None:
            raise TypeError("RedisStorage needs a url, a client or an async_client")
        else:
            if client is not None:
                if isinstance(client, redis.asyncio.Redis):
                    raise TypeError(
                        "client must be a sync redis client; pass a redis.asyncio.Redis "
                        "as async_client"
                    )
                _check_timeouts("client", client)
            if async_client is not None:
                if not isinstance(async_client, redis.asyncio.Redis):
                    raise TypeError(
                        "async_client must be a redis.asyncio.Redis, got "
                        f"{type(async_client).__name__}"
                    )
                _check_timeouts("async_client", async_client)
            self._sync, self._async = client, async_client
            self._display = _describe(client if client is not None else async_client)
        self._fresh()
        track(self)

    def _after_fork(self) -> None:
        """A forked child: fresh state, and a sync client whose pool can reset itself.

        redis-py's pool notices the fork and resets itself, but under its own lock, which
        another thread of the parent may have held at the fork: the child would wait for it
        forever (seen as a hung child in `tests/redis/test_redis_processes.py`). Its locks are
        replaced before anything in the child uses the pool (redis-py 8.1's `_lock` and
        `_fork_lock`; a client without them is left alone).
        """
        pool = getattr(self._sync, "connection_pool", None)
        for attr in ("_lock", "_fork_lock"):
            if isinstance(getattr(pool, attr, None), _RLOCK):
                setattr(pool, attr, threading.RLock())
        self._fresh()

    def _fresh(self) -> None:
        """A fresh lock, no outage, and no async clients (at construction and after a fork)."""
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._down = False
        self._last_error: BaseException | None = None
        self._async_by_loop.clear()
        self._last_async: tuple[weakref.ref[Any], Any] | None = None

    def _init_url(self, redis: Any, url: object) -> None:
        if not isinstance(url, str):
            raise TypeError(f"storage URL must be a str, got {type(url).__name__}")
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in _SCHEMES:
            raise ValueError(
                "storage URL must start with redis://, rediss:// or unix://, got "
                f"{redact(url)!r}"
            )
        self._url = url
        self._display = redact(url)
        try:
            self._sync = redis.Redis.from_url(url, **self._client_options(redis))
            self._pool = self._sync.connection_pool
        except ValueError as e:
            # redis-py's message may quote the URL: name the field, never the password.
            raise ValueError(f"storage URL {self._display!r} is invalid") from e

    def _client_options(self, redis: Any) -> dict[str, Any]:
        return {
            "socket_timeout": self._socket_timeout,
            "socket_connect_timeout": self._connect_timeout,
            "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
        }

    # -- what primitives read ---------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """The first part of every key."""
        return self._prefix

    @property
    def socket_timeout(self) -> float:
        """Seconds a command may take (riprap's own clients)."""
        return self._socket_timeout

    def __repr__(self) -> str:
        return f"RedisStorage({self._display!r}, prefix={self._prefix!r})"

    def __str__(self) -> str:
        return self._display

    def sync_client(self) -> Any:
        """The sync client (TypeError when only an async one was given)."""
        if self._sync is None:
            raise TypeError(
                f"storage {self._display} has only an async client; sync calls need "
                "RedisStorage(client=redis.Redis(...), async_client=...)"
            )
        return self._sync

    def _async_client(self) -> Any:
        """The async client for the running loop (None: run the sync one in a thread)."""
        if self._async is not None or self._url is None:
            return self._async
        loop = asyncio.get_running_loop()
        last = self._last_async
        if last is not None and last[0]() is loop:
            return last[1]
        client = self._async_by_loop.get(loop)
        if client is None:
            redis = _import_redis()
            client = redis.asyncio.Redis.from_url(
                self._url, **self._client_options(redis)
            )
            self._async_by_loop[loop] = client
        self._last_async = (weakref.ref(loop), client)
        return client

    async def aclose(self) -> None:
        """Close the async connections riprap made for the running event loop."""
        if self._url is None:
            return
        client = self._async_by_loop.pop(asyncio.get_running_loop(), None)
        self._last_async = None
        if client is not None:
            await client.aclose()

    def close(self) -> None:
        """Close the sync connections riprap made (they reopen when needed)."""
        if self._url is not None:
            self._sync.connection_pool.disconnect()

    # -- the outage state -------------------------------------------------------------------

    def available(self) -> bool:
        """False while calls should skip Redis after a storage error."""
        return not self._down or time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            first = not self._down
            self._down = True
            self._last_error = exc
            self._down_until = time.monotonic() + self._retry_interval
        if first:
            logger.warning(
                "storage %s failed (%s: %s); deciding by on_storage_error until it answers",
                self._display,
                type(exc).__name__,
                exc,
            )

    def _answered(self) -> None:
        if self._down:
            with self._lock:
                was_down, self._down = self._down, False
            if was_down:
                logger.info("storage %s answers again", self._display)

    # -- running scripts --------------------------------------------------------------------

    def run(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run `script` (EVALSHA, loading it once on NOSCRIPT); StorageError on failure.

        The success path is kept short: it runs on every decision. On the clients riprap makes,
        it talks to a pooled connection directly (send, read, release), skipping the layers
        redis-py puts around every command (retries, which riprap turns off, events and
        metrics hooks): about 10 µs of a 50 µs round trip. Your own clients keep their hooks.
        """
        if self._down and not self.available():
            raise self._skip()
        pool = self._pool
        if pool is None:
            client = self.sync_client()
            try:
                reply = client.execute_command(
                    "EVALSHA", script.sha, len(keys), *keys, *args
                )
            except _ERRORS as e:
                return self._retry_or_fail(e, client, script, keys, args)
        else:
            try:
                reply = _direct(pool, ("EVALSHA", script.sha, len(keys), *keys, *args))
            except _ERRORS as e:
                return self._retry_or_fail(e, self._sync, script, keys, args)
        if self._down:
            self._answered()
        return reply

    def _retry_or_fail(
        self,
        error: BaseException,
        client: Any,
        script: Script,
        keys: Sequence[Any],
        args: Sequence[Any],
    ) -> Any:
        exceptions = _import_redis().exceptions
        try:
            if not isinstance(error, exceptions.NoScriptError):
                raise error
            client.script_load(script.source)
            reply = client.execute_command(
                "EVALSHA", script.sha, len(keys), *keys, *args
            )
        except exceptions.ReadOnlyError as e:
            _disconnect(client)
            self._failed(e)
            raise StorageError(str(e)) from e
        except exceptions.ResponseError as e:
            if _refuses_time(args) and not self._time_works(client, keys):
                raise _time_refused(e) from e
            self._failed(e)
            raise StorageError(str(e)) from e
        except _ERRORS as e:
            self._failed(e)
            raise StorageError(str(e)) from e
        self._answered()
        return reply

    async def arun(
        self, script: Script, keys: Sequence[Any], args: Sequence[Any]
    ) -> Any:
        """`run` for async callers (on the async client, or the sync one in a thread)."""
        if self._down and not self.available():
            raise self._skip()
        client = self._async_client()
        if client is None:
            return await asyncio.to_thread(self.run, script, keys, args)
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            if self._url is None:
                reply = await client.execute_command(*command)
            else:
                reply = await _adirect(client.connection_pool, command)
        except _ERRORS as e:
            return await self._aretry_or_fail(e, client, script, keys, args)
        if self._down:
            self._answered()
        return reply

    async def _aretry_or_fail(
        self,
        error: BaseException,
        client: Any,
        script: Script,
        keys: Sequence[Any],
        args: Sequence[Any],
    ) -> Any:
        exceptions = _import_redis().exceptions
        try:
            if not isinstance(error, exceptions.NoScriptError):
                raise error
            await client.script_load(script.source)
            reply = await client.execute_command(
                "EVALSHA", script.sha, len(keys), *keys, *args
            )
        except exceptions.ReadOnlyError as e:
            await client.connection_pool.disconnect()
            self._failed(e)
            raise StorageError(str(e)) from e
        except exceptions.ResponseError as e:
            if _refuses_time(args) and not await self._atime_works(client, keys):
                raise _time_refused(e) from e
            self._failed(e)
            raise StorageError(str(e)) from e
        except _ERRORS as e:
            self._failed(e)
            raise StorageError(str(e)) from e
        self._answered()
        return reply

    def _skip(self) -> StorageError:
        error = StorageError(f"storage {self._display} is down", skipped=True)
        error.__cause__ = self._last_error
        return error

    def _time_works(self, client: Any, keys: Sequence[str | bytes]) -> bool:
        try:
            client.eval(_PROBE.source, 1, keys[0])
        except Exception:
            return False
        return True

    async def _atime_works(self, client: Any, keys: Sequence[str | bytes]) -> bool:
        try:
            await client.eval(_PROBE.source, 1, keys[0])
        except Exception:
            return False
        return True


def _pack_resp(command: tuple[Any, ...]) -> bytes:
    """A command in Redis's wire format (RESP), for when hiredis is not installed."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        if isinstance(arg, str):
            data = arg.encode("utf-8", "surrogatepass")
        elif isinstance(arg, int):
            data = b"%d" % arg
        else:
            data = bytes(arg)
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _packer() -> Any:
    try:
        import hiredis  # noqa: PLC0415 - optional: redis-py's C parser and packer
    except ImportError:
        return _pack_resp
    return hiredis.pack_command


#: Packs a command tuple into bytes: hiredis's C packer if installed (riprap[redis] installs
#: it), else the Python one above. redis-py's asyncio connections always pack in Python
#: (~1 µs per argument, and a decision has 8): packing here makes both paths cheap.
_pack = _packer()


def _direct(pool: Any, command: tuple[Any, ...]) -> Any:
    """One command on a pooled connection: what `execute_command` does, minus its hooks.

    A connection whose reply was not read to the end (a timeout, a broken socket, an
    interruption) is closed before it goes back to the pool; an error reply leaves it usable.
    """
    packed = _pack(command)
    conn = pool.get_connection()
    try:
        conn.send_packed_command((packed,))
        return conn.read_response()
    except BaseException as e:
        if not isinstance(e, _redis.exceptions.ResponseError):
            conn.disconnect()
        raise
    finally:
        pool.release(conn)


async def _adirect(pool: Any, command: tuple[Any, ...]) -> Any:
    """`_direct` for an asyncio pool.

    redis-py's asyncio `send_packed_command` wraps every write in `asyncio.wait_for` when a
    socket timeout is set, which creates a task per command (~20 % of a round trip). A command
    of a few hundred bytes goes into the transport's buffer at once, so it is written directly
    and only a write that does not fit waits (for `drain`, with the timeout). Connections
    without the stream writer redis-py has had since 4.2 take the public path.
    """
    packed = _pack(command)
    conn = await pool.get_connection()
    try:
        writer: Any = getattr(conn, "_writer", None)
        checks_health: Any = getattr(conn, "health_check_interval", 0)
        if writer is None or checks_health:
            await conn.send_packed_command((packed,))
        else:
            writer.write(packed)
            if writer.transport.get_write_buffer_size():
                await asyncio.wait_for(writer.drain(), conn.socket_timeout)
        return await conn.read_response()
    except BaseException as e:
        if not isinstance(e, _redis.exceptions.ResponseError):
            await conn.disconnect()
        raise
    finally:
        await pool.release(conn)


def _refuses_time(args: Sequence[Any]) -> bool:
    """Whether the script asked for the server's TIME (its first argument is empty)."""
    return bool(args) and args[0] == ""


def _time_refused(e: BaseException) -> ValueError:
    return ValueError(
        "time_source='server' needs TIME inside Lua scripts, which this Redis refuses "
        f"({e}); use time_source='client'"
    )


def _disconnect(client: Any) -> None:
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        pool.disconnect()


def _probe() -> Script:
    from .scripts import TIME_PROBE  # noqa: PLC0415 - scripts import nothing back

    return Script(TIME_PROBE)


_PROBE = _probe()

_BY_URL: dict[str, RedisStorage] = {}
_BY_URL_LOCK = threading.Lock()


def storage_of(storage: object) -> RedisStorage:
    """`storage=` as a RedisStorage: a URL (one shared per URL), a client, or itself."""
    if isinstance(storage, RedisStorage):
        return storage
    if isinstance(storage, str):
        with _BY_URL_LOCK:
            found = _BY_URL.get(storage)
            if found is None:
                found = _BY_URL[storage] = RedisStorage(storage)
            return found
    redis = _import_redis()
    if isinstance(storage, redis.asyncio.Redis):
        return RedisStorage(async_client=storage)
    if isinstance(storage, (redis.Redis, redis.RedisCluster)):
        return RedisStorage(client=storage)
    raise TypeError(
        "storage must be a redis:// URL, a redis.Redis, a redis.asyncio.Redis or a "
        f"riprap.RedisStorage, got {type(storage).__name__}"
    )
