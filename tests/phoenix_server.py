"""A throwaway Arize Phoenix server for the telemetry round-trip test.

Why a real backend: what a tracing backend keeps of our spans (attributes, events, parent ids; Phoenix drops span
links) is a property of that backend, so the test exports to a real one and reads back through its REST API.

Phoenix pins its own dependencies, so it lives in its own venv (``make phoenix`` creates ``.venv-phoenix``). The
server gets a fresh working directory (its SQLite database), listens on 127.0.0.1 with free HTTP and gRPC ports,
has its usage telemetry switched off, and is terminated when the session ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHOENIX_BIN = REPO / ".venv-phoenix" / "bin" / "phoenix"


class PhoenixUnavailable(RuntimeError):
    """Phoenix is not installed here (locally: skip; in CI: fail)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def phoenix_server(timeout_s: float = 120.0) -> Iterator[str]:
    """Start ``phoenix serve`` and yield its base URL (``http://127.0.0.1:<port>``)."""
    if not os.access(PHOENIX_BIN, os.X_OK):
        raise PhoenixUnavailable(
            f"{PHOENIX_BIN} not found: run `make phoenix` (installs arize-phoenix in .venv-phoenix)"
        )
    root = Path(tempfile.mkdtemp(prefix="cg-phoenix-"))
    port, grpc_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHOENIX_", "OTEL_"))}
    env.update(
        PHOENIX_WORKING_DIR=str(root),
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_TELEMETRY_ENABLED="false",
    )
    log = root / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(PHOENIX_BIN), "serve"], env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc, log, timeout_s)
        yield base
    finally:
        _stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"phoenix serve exited with {proc.returncode}:\n{_log_tail(log)}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2.0) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"Phoenix not ready at {base} within {timeout_s}s:\n{_log_tail(log)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it may fork workers), then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
