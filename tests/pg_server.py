"""A throwaway PostgreSQL server for tests, started from Debian's `postgresql` binaries.

Why not a mock: the store's atomicity (two replicas must not apply a pair twice) is a property of the real server's
locking, so the tests run against a real one. The cluster lives in a temporary directory, listens only on
127.0.0.1 with a free port, and is stopped (fast mode) when the session ends.

PostgreSQL refuses to run as root; CI runs as root, so the server runs as the `postgres` system user (created by the
Debian package) via `runuser` in that case.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """The binaries are not installed here (locally: skip; in CI: fail)."""


def _bin_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise PostgresUnavailable("PostgreSQL binaries not found (Debian package `postgresql`; .ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root without `runuser`: cannot start PostgreSQL as another user")
    return ["runuser", "-u", "postgres", "--", *cmd]


class PostgresCluster:
    """A running throwaway cluster: its ``url``, and :meth:`stop` / :meth:`start` to take the same server (same
    data, same port) down and up again, e.g. for an outage mid-pilot (tests of docs/faults.md)."""

    def __init__(self, bin_dir: Path, data: Path, log: Path, options: str, port: int, timeout_s: float) -> None:
        self._bin_dir, self._data, self._log, self._options, self.port = bin_dir, data, log, options, port
        self._timeout_s = timeout_s
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        pg_ctl = [str(self._bin_dir / "pg_ctl"), "-D", str(self._data), "-l", str(self._log), "-o", self._options]
        subprocess.run(
            _as_server_user([*pg_ctl, "-w", "start"]), check=True, capture_output=True, timeout=self._timeout_s
        )
        _wait_ready(self.port, self._timeout_s)

    def stop(self) -> None:
        """Stop the server now (fast mode: open connections are closed, clients see the server go away)."""
        subprocess.run(
            _as_server_user([str(self._bin_dir / "pg_ctl"), "-D", str(self._data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            timeout=self._timeout_s,
        )


@contextmanager
def postgres_cluster(timeout_s: float = 30.0) -> Iterator[PostgresCluster]:
    """Start a fresh cluster and yield it (stopped and deleted afterwards)."""
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="cg-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    subprocess.run(
        _as_server_user(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=100"
    cluster = PostgresCluster(bin_dir, data, root / "server.log", options, port, timeout_s)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server(timeout_s: float = 30.0) -> Iterator[str]:
    """Start a fresh cluster and yield a libpq connection URL to its `postgres` database."""
    with postgres_cluster(timeout_s) as cluster:
        yield cluster.url


def _wait_ready(port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"PostgreSQL did not accept connections on port {port} within {timeout_s}s")
