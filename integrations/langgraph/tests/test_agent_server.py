"""The guarded agent deployed on LangGraph's Agent Server (``examples/agent_server``), served by ``langgraph dev``
and driven by ``langgraph-sdk``, in modes ``observe``, ``pilot`` and ``auto``.

Per mode the test starts the server on a free loopback port (offline: no LangSmith tracing, no CLI analytics; the
example's model is scripted), sends the same requests to the guarded graph and to the unguarded one (``runs.wait``
and ``runs.stream``), stops the server's process group, and checks what the store (a SQLite file the example
writes to, named by ``CRITIC_GUARD_STORE``) holds:

* every client run answers exactly as the unguarded deployment does (these modes serve the unguarded arm);
* every production run is recorded with every one of its five steps judged (a verdict, no critic error);
* pilots: every run has its pair, and every pair is complete: the shadow branch forked from a checkpoint the server
  itself wrote for the run's thread (found in the thread's history through the API), and for a request where the
  agent slips the treatment branch recovered (control failed, treatment succeeded).

The server runs blockbuster, which raises on blocking calls inside async code; the log's "Blocking call" lines are
checked by a test of their own (the guard logs its first failed store call, so one line is already a failure).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from critic_guard.store.base import PairStatus
from critic_guard.store.sqlite import SQLiteStore
from tests.pg_fixtures import fresh_schema

pytestmark = [pytest.mark.agent_server, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "agent_server"
REQUESTS = 6  # requests 0, 2, 4 slip at step 2 (flagged); 1, 3, 5 do not
STREAMED = {4, 5}  # sent with runs.stream; the others with runs.wait
STEPS = 5  # four tool calls and the answer
RIGHT = "The sum is 10."
SLIPPED = "The sum is 20."
BOUND_S = 60.0  # the most any wait below may take before the test fails


@dataclass
class Served:
    """What one server run of a mode left behind."""

    mode: str
    answers: dict[str, dict[int, str]]  # graph -> request -> final answer
    histories: set[str]  # every checkpoint id of the guarded threads, from the server's API
    store: Path
    log: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(mode: str, store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "integrations" / "langgraph")]),
        CRITIC_GUARD_MODE=mode,
        CRITIC_GUARD_STORE=store,
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
    )
    return env


def wait_ready(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"langgraph dev exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ok", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"langgraph dev not ready within {BOUND_S:g} s:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group (the CLI runs uvicorn in the same group)."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(15)


async def drive(url: str) -> tuple[dict[str, dict[int, str]], set[str]]:
    """Send every request to both graphs at once; return the answers and the guarded threads' checkpoint ids."""
    client = get_client(url=url)
    threads: dict[str, dict[int, str]] = {"agent": {}, "unguarded": {}}

    async def one(graph: str, i: int) -> tuple[str, int, str]:
        thread = (await client.threads.create())["thread_id"]
        threads[graph][i] = thread
        request = {"messages": [{"role": "user", "content": f"Add 1, 2, 3 and 4: request {i}"}]}
        if i in STREAMED:
            last: Any = None
            async for part in client.runs.stream(thread, graph, input=request, stream_mode="values"):
                if part.event == "values":
                    last = part.data
            return graph, i, last["messages"][-1]["content"]
        out: Any = await client.runs.wait(thread, graph, input=request)
        return graph, i, out["messages"][-1]["content"]

    done = await asyncio.gather(*(one(graph, i) for graph in threads for i in range(REQUESTS)))
    answers: dict[str, dict[int, str]] = {"agent": {}, "unguarded": {}}
    for graph, i, answer in done:
        answers[graph][i] = answer
    histories: set[str] = set()
    for thread in threads["agent"].values():
        for state in await client.threads.get_history(thread, limit=100):
            histories.add(state["checkpoint"]["checkpoint_id"])
    return answers, histories


def settled(store_path: Path, mode: str) -> bool:
    """Whether the server has written everything the checks read: every production run ended with its steps,
    and in a pilot every pair closed (branches finish in the background)."""
    if not store_path.exists():
        return False
    store = SQLiteStore(str(store_path))
    try:
        production = [r for r in store.runs() if r.parent_run_id is None]
        if len(production) < REQUESTS or any(r.status == "running" for r in production):
            return False
        if any(len({s.step for s in store.steps_of(r.run_id)}) < STEPS for r in production):
            return False
        if mode == "observe":
            return True
        pairs = store.pairs(production[0].guard_key)
        return len(pairs) == REQUESTS and all(p.status is not PairStatus.OPEN for p in pairs)
    finally:
        store.close()


@contextmanager
def running_server(mode: str, workdir: Path, *, store: str | None = None) -> Iterator[str]:
    """``langgraph dev`` serving a copy of the example from ``workdir`` (where the server keeps its files) in
    ``mode``, its store ``store`` (default: ``workdir/guard.db``); yields the URL; stops the process group."""
    if shutil.which("langgraph", path=str(Path(sys.executable).parent)) is None:
        pytest.fail('langgraph-cli is not installed: pip install "langgraph-cli[inmem]" (the dev extra has it)')
    for source in [*EXAMPLE.glob("*.py"), EXAMPLE / "langgraph.json"]:
        shutil.copy(source, workdir / source.name)
    log = workdir / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "langgraph"), "dev", "--no-browser", "--no-reload"]
    command += ["--port", str(port), "--host", "127.0.0.1", "--config", "langgraph.json"]
    env = server_env(mode, store or f"sqlite:///{workdir / 'guard.db'}")
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_ready(url, server, log)
        yield url
    finally:
        stop(server)


@pytest.fixture(scope="module", params=["observe", "pilot", "auto"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One ``langgraph dev`` per mode, driven once; the server is stopped before the checks run."""
    mode = request.param
    workdir = tmp_path_factory.mktemp(f"server-{mode}")
    store = workdir / "guard.db"
    with running_server(mode, workdir) as url:
        answers, histories = asyncio.run(drive(url))
        deadline = time.monotonic() + BOUND_S
        while not settled(store, mode) and time.monotonic() < deadline:
            time.sleep(0.2)
    yield Served(mode, answers, histories, store, (workdir / "server.log").read_text())


def test_every_run_answers_as_the_unguarded_deployment(served: Served) -> None:
    assert served.answers["agent"] == served.answers["unguarded"]
    assert served.answers["agent"] == {i: SLIPPED if i % 2 == 0 else RIGHT for i in range(REQUESTS)}


def test_every_production_run_is_recorded_with_every_step_judged(served: Served) -> None:
    store = SQLiteStore(str(served.store))
    try:
        production = [r for r in store.runs() if r.parent_run_id is None]
        assert len(production) == REQUESTS
        assert {r.status for r in production} == {"completed"}
        for run in production:
            steps = store.steps_of(run.run_id)
            assert [s.step for s in steps] == list(range(STEPS))  # serving control: no retries
            assert all(s.p_fail is not None and s.critic_error is None for s in steps)
        flagged = sum(any(s.flagged for s in store.steps_of(r.run_id)) for r in production)
        assert flagged == REQUESTS // 2
    finally:
        store.close()


def test_pilot_pairs_complete_from_checkpoints_the_server_wrote(served: Served) -> None:
    if served.mode == "observe":
        pytest.skip("observe never forks")
    store = SQLiteStore(str(served.store))
    try:
        production = [r for r in store.runs() if r.parent_run_id is None]
        pairs = store.pairs(production[0].guard_key)
        assert len(pairs) == REQUESTS
        assert [(p.status, p.reason) for p in pairs] == [(PairStatus.COMPLETE, None)] * REQUESTS
        forked = [p for p in pairs if p.flagged]
        assert len(forked) == REQUESTS // 2
        for pair in forked:
            assert pair.fork_checkpoint_id in served.histories  # the server's own checkpoint of the run's thread
            assert (pair.control_success, pair.treatment_success) == (False, True)  # the rollback recovered
        assert all((p.control_success, p.treatment_success) == (True, True) for p in pairs if not p.flagged)
    finally:
        store.close()


def test_no_blocking_call_in_the_server_log(served: Served) -> None:
    """``langgraph dev`` runs with blockbuster: the guard's async path (run writes on its writer thread, lifecycle reads
    off the loop, no contended lock) leaves no "Blocking call" in the server's log (docs/faults.md)."""
    blocking = [line for line in served.log.splitlines() if "Blocking call" in line]
    assert blocking == []


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store the deployment's guard and the pilot share: a SQLite file (one machine), or a fresh schema on a
    real PostgreSQL server (the topology of docs/pilot.md)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'guard.db'}"
        return
    with fresh_schema(request.getfixturevalue("postgres_url"), "cg_server") as url:  # the session's server
        yield url


def pilot_cli(workdir: Path, url: str, store: str) -> dict[str, Any]:
    """``critic-guard pilot pilot_suite:suite --server URL --assistant agent``, run from the example's copy."""
    command = [str(Path(sys.executable).parent / "critic-guard"), "pilot", "pilot_suite:suite", "--server", url]
    command += ["--assistant", "agent", "--store", store, "--concurrency", "4"]
    command += ["--tasks", "8", "--trace-file", str(workdir / "traces.jsonl"), "--json"]
    done = subprocess.run(
        command, cwd=workdir, env=server_env("pilot", store), capture_output=True, text=True, timeout=BOUND_S
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_pilot_cli_drives_a_deployed_agent_and_resumes(shared_store: str, tmp_path: Path) -> None:
    """``critic-guard pilot --server``: every task a server run (four at a time), the pairs completed by the
    server's guard in the shared store; a second start finds every task done and runs nothing."""
    with running_server("pilot", tmp_path, store=shared_store) as url:
        first = pilot_cli(tmp_path, url, shared_store)
        second = pilot_cli(tmp_path, url, shared_store)
    assert (first["tasks"], first["done"], first["ran"], first["failed"]) == (8, 8, 8, 0)
    assert first["pairs"] == {"n00": 0, "n01": 4, "n10": 0, "n11": 4}  # the four slips recovered in shadow
    assert (first["flagged"], first["incomplete"], first["open"]) == (4, 0, 0)
    assert (second["done"], second["ran"], second["skipped"], second["pairs"]) == (8, 0, 8, first["pairs"])
