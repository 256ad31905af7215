"""A throwaway `redis-server` on 127.0.0.1, for the test suite and the benchmarks.

It listens on a free port, keeps its files in a temporary directory, never persists (no RDB,
no AOF), and can be stopped, restarted on the same port, paused (SIGSTOP) and resumed: the
faults the Redis tests need. Nothing here is used by the library itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["RedisServer", "find_redis_server", "free_port"]


def find_redis_server() -> str | None:
    """The `redis-server` executable on PATH, or None."""
    return shutil.which("redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One `redis-server` process (see the module docs)."""

    def __init__(self, *extra: str, password: str | None = None) -> None:
        exe = find_redis_server()
        if exe is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self.exe = exe
        self.port = free_port()
        self.password = password
        self.extra: Sequence[str] = extra
        self.dir = tempfile.mkdtemp(prefix="riprap-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """`redis://[:password@]127.0.0.1:<port>/0`."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it (on the same port as before, after a stop) and wait until it answers."""
        args = [
            self.exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            "--logfile",
            os.path.join(self.dir, "redis.log"),
            *self.extra,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10.0
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer within 10 s")
            time.sleep(0.01)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                auth = b""
                if self.password:
                    pw = self.password.encode()
                    auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw)
                s.sendall(auth + b"*1\r\n$4\r\nPING\r\n")
                reply = b""
                while b"PONG" not in reply:
                    chunk = s.recv(64)
                    if not chunk:
                        return False
                    reply += chunk
                return True
        except OSError:
            return False

    def client(self, **kwargs: Any) -> Any:
        """A sync redis-py client of this server (with timeouts)."""
        import redis  # noqa: PLC0415 - the optional dependency

        kwargs.setdefault("socket_timeout", 5.0)
        kwargs.setdefault("socket_connect_timeout", 5.0)
        return redis.Redis.from_url(self.url, **kwargs)

    def stop(self) -> None:
        """Stop it (SIGKILL: no shutdown save, instant) and wait for the process to end."""
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open, nothing answers."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo `pause`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Stop it and remove its directory."""
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
