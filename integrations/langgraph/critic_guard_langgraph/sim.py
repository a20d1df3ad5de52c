"""A simulated agent with known ground truth: a stochastic scripted model inside a real ``create_agent`` graph.

Why: whether intervention helps depends on four numbers (base failure rate, critic quality, recovery, disruption)
that no real agent tells us. Here we set them, run the real guarded agent (middleware, checkpoints, shadow forks,
store) and check every statistic against the truth computed without the graph (``benchmarks/sim_truth.py``).

**The task.** A :class:`SimTask` lists ``steps - 1`` small integers; the agent records them one per step with the
``record`` tool, then answers their sum: ``steps`` model calls in a run without intervention. :func:`sim_judge`
says the run succeeded iff the final answer is the sum of the task's values.

**The model** (:func:`sim_model`, a :class:`~critic_guard_langgraph.testing.ScriptedChatModel`). Each model call
proposes the next step (record the next value, or answer the sum of the values recorded so far). A *first*
proposal at a step is a mistake with probability ``step_error`` (a value off by 1..9, or an answer off by 1..9);
with ``task_spread > 0`` each task has its own mistake probability (hard and easy tasks, so reruns of a task
correlate, as with real agents).
A *retry* after a ROLLBACK with feedback (the history ends with the guard's note) redraws the step: if the
rolled-back proposal was a mistake, the retry is right with probability ``recover`` (the r-knob), else a mistake
again; if it was right, the retry is a mistake with probability ``disrupt`` (the d-knob). A mistake that runs
is never undone, so a run succeeds iff every step that ran (and the answer) was right.

Every draw comes from a digest of the input messages (plus ``scenario.seed``), never from hidden state: two
shadow branches that share a prefix share its continuation distribution, a rerun reproduces a run exactly, and a
retry (whose history differs by the note) is a fresh draw. The rolled-back proposal is not in the retry's input,
so the model recomputes it from the history without the note (also a pure function). Silent rollbacks (no note)
give the same history and therefore the same proposal again: the simulator needs ``Policy(feedback=True)``. It
models ROLLBACK (:meth:`SimScenario.policy`); under APPEND the note follows a step that already ran, and the next
proposal is redrawn by the same r/d rule against the proposal it would have made without the note, which the
ground truth does not model.

**The critic** (:class:`~critic_guard_langgraph.sim_critic.SimCritic`) reads the truth from the conversation and
tells a mistaken step from a right one with exactly the scenario's ``critic_auroc``. Each reply carries
``response_metadata["sim"] = {"step", "retry", "mistake"}`` for inspection.

**Reruns.** The paper's ``full`` design runs each task twice, independently. :func:`sim_input` takes an
``attempt`` number that goes into the task's prompt, so two attempts of a task are independent draws, while the
pilot's ``fork`` design continues one run in two branches.

The same generative process simulated in numpy, without the graph, gives each scenario's exact ``p, r, d, net,
p_star`` for both designs: ``benchmarks/sim_truth.py`` (``sim_truth``), which the benchmarks and the simulator's
tests use. ``SCENARIOS`` spans the paper's regimes.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import BaseTool, tool

from critic_guard.policy import Policy
from critic_guard.types import Action
from critic_guard_langgraph.messages import is_guard_note
from critic_guard_langgraph.testing import ScriptedChatModel, digest_messages

__all__ = [
    "SCENARIOS",
    "SimCounts",
    "SimScenario",
    "SimTask",
    "record",
    "sim_agent",
    "sim_input",
    "sim_judge",
    "sim_model",
    "sim_tasks",
    "sim_tools",
]

_PHI = NormalDist()
_TASK_RE = re.compile(r"^\[sim task (?P<id>[^\]\s]+) attempt (?P<attempt>\d+)\] .*?: (?P<values>\d+(?:, \d+)*)\.")


@dataclass(frozen=True, slots=True)
class SimScenario:
    """The knobs of one simulated world (frozen: it keys the cached ground truth).

    ``step_error``: probability that a first proposal at a step is a mistake (per-step failure rate; a run of
    ``steps`` model calls fails without intervention with probability ``1 - (1 - step_error) ** steps``, see
    :meth:`from_failure_rate` to set that per-task rate instead). ``critic_auroc``: the critic's AUROC between
    mistaken and right steps (binormal). ``recover`` / ``disrupt``: the r- and d-knobs of a retry after a rollback
    (module docstring). ``critic_shift`` moves every score (positive: the critic flags more). ``tau``, ``min_step``,
    ``max_interventions``: the guard's policy (:meth:`policy`), which the ground truth must know.
    ``task_spread``: 0 makes all tasks alike; above 0, a task's per-step mistake probability is drawn (from the
    task id) from a Beta distribution with mean ``step_error`` and intra-class correlation ``task_spread``
    (``Var = task_spread * step_error * (1 - step_error)``), so two runs of one task fail together more often than
    two runs of different tasks (``benchmarks/sim_truth.py`` reports the resulting correlation of run outcomes,
    ``SimTruth.icc``).
    """

    name: str
    step_error: float
    critic_auroc: float
    recover: float
    disrupt: float
    steps: int = 6
    seed: int = 0
    critic_shift: float = 0.0
    tau: float = 0.6
    min_step: int = 2
    max_interventions: int = 3
    description: str = ""
    task_spread: float = 0.0

    def __post_init__(self) -> None:
        for name in ("step_error", "recover", "disrupt"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not 0.5 <= self.critic_auroc < 1.0:
            raise ValueError(f"critic_auroc must be in [0.5, 1), got {self.critic_auroc!r}")
        if self.steps < 2 or not 0 <= self.min_step < self.steps:
            raise ValueError(f"need steps >= 2 and 0 <= min_step < steps, got {self.steps}, {self.min_step}")
        if not 0.0 <= self.task_spread < 1.0:
            raise ValueError(f"task_spread must be in [0, 1), got {self.task_spread!r}")
        if not 0.0 < self.tau < 1.0 or self.max_interventions < 1:
            raise ValueError("need 0 < tau < 1 and max_interventions >= 1")

    @classmethod
    def from_failure_rate(cls, name: str, failure_rate: float, **knobs: Any) -> SimScenario:
        """A scenario whose unguarded runs fail with probability ``failure_rate`` (per task), spread evenly over
        the steps: ``step_error = 1 - (1 - failure_rate) ** (1 / steps)``."""
        steps = int(knobs.get("steps", 6))
        return cls(name, step_error=1.0 - (1.0 - failure_rate) ** (1.0 / steps), **knobs)

    @property
    def separation(self) -> float:
        """``delta``: the distance between the critic's score means on mistaken and right steps."""
        return math.sqrt(2.0) * _PHI.inv_cdf(self.critic_auroc)

    @property
    def flag_threshold(self) -> float:
        """The score ``s`` at and above which ``p_fail >= tau``: ``Phi^-1(tau) + delta / 2 - critic_shift``."""
        return _PHI.inv_cdf(self.tau) + self.separation / 2.0 - self.critic_shift

    @property
    def task_error_beta(self) -> tuple[float, float]:
        """The Beta distribution's ``(a, b)`` that draws a task's per-step mistake probability when
        ``task_spread > 0``: mean ``step_error``, intra-class correlation ``task_spread``."""
        concentration = (1.0 - self.task_spread) / self.task_spread
        return self.step_error * concentration, (1.0 - self.step_error) * concentration

    def task_error(self, task_id: str) -> float:
        """The per-step mistake probability of one task: ``step_error``, or its own draw when ``task_spread > 0``."""
        if self.task_spread == 0.0 or self.step_error in (0.0, 1.0):
            return self.step_error
        return random.Random(f"sim-task-error:{self.seed}:{task_id}").betavariate(*self.task_error_beta)

    def policy(self) -> Policy:
        """The guard policy this world assumes: ROLLBACK with feedback, ``tau``, ``min_step``, ``max_interventions``."""
        return Policy(
            tau=self.tau,
            min_step=self.min_step,
            max_interventions=self.max_interventions,
            action=Action.ROLLBACK,
            feedback=True,
        )


@dataclass(frozen=True, slots=True)
class SimTask:
    """One task: record ``values`` in order, then answer their sum. ``task_id`` pairs the runs of a task."""

    task_id: str
    values: tuple[int, ...]

    @property
    def answer(self) -> int:
        return sum(self.values)

    def prompt(self, attempt: int = 0) -> str:
        """The user message of this task; the attempt number makes reruns independent draws of the model."""
        listed = ", ".join(str(v) for v in self.values)
        return (
            f"[sim task {self.task_id} attempt {attempt}] Record these values in order with the record tool, "
            f"one call per step, then answer with their sum: {listed}."
        )

    def as_metadata(self) -> dict[str, Any]:
        """The task as the guard stores it (``task_id`` pairs runs; see ``CriticGuard.start_run``)."""
        return {"task_id": self.task_id, "values": list(self.values)}

    @classmethod
    def parse(cls, text: str) -> tuple[SimTask, int] | None:
        """The task and attempt written by :meth:`prompt`, or None if ``text`` is not a simulator prompt."""
        match = _TASK_RE.match(text)
        if match is None:
            return None
        values = tuple(int(v) for v in match["values"].split(", "))
        return cls(match["id"], values), int(match["attempt"])


def sim_tasks(n: int, seed: int = 0, *, steps: int = 6) -> list[SimTask]:
    """``n`` seeded tasks of ``steps`` model calls each (``steps - 1`` values to record, then the answer)."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    tasks = []
    for i in range(n):
        rng = random.Random(f"sim-task:{seed}:{i}")
        tasks.append(SimTask(f"s{seed}-t{i}", tuple(rng.randint(1, 9) for _ in range(steps - 1))))
    return tasks


def sim_input(task: SimTask, attempt: int = 0) -> dict[str, Any]:
    """The agent input for ``task`` (``agent.invoke(sim_input(task), config)``)."""
    return {"messages": [HumanMessage(task.prompt(attempt), id=f"sim-task-{task.task_id}-{attempt}")]}


@tool
def record(step: int, value: int) -> str:
    """Record the value of one step."""
    return f"recorded {value} at step {step}"


def sim_tools() -> list[BaseTool]:
    """The simulator's tools: ``record`` only. It has no side effects, so shadow branches may run it
    (declare it ``READ_ONLY`` in the middleware's ``shadow_tools``)."""
    return [record]


def sim_judge(task: Any, final_state: Any) -> bool:
    """Success iff the run's final message is an answer equal to the task's sum.

    ``task`` is ignored (the middleware passes its stored metadata): the task is read from the conversation, so
    the judge works on any run of the simulator, production or shadow branch.
    """
    messages: Sequence[BaseMessage] = final_state["messages"]
    found = _find_task(messages)
    last = messages[-1] if messages else None
    if found is None or not isinstance(last, AIMessage) or last.tool_calls:
        return False
    return last.text.strip() == str(found[0].answer)


def _find_task(messages: Sequence[BaseMessage]) -> tuple[SimTask, int] | None:
    for message in messages:
        if isinstance(message, HumanMessage) and not is_guard_note(message):
            return SimTask.parse(message.text)
    return None


class SimCounts:
    """Thread-safe counters of model and critic calls per task id (shadow branches run on worker threads).

    Counting where the calls happen (in the model and the critic) instead of by formula is what makes the cost
    benchmark a measurement.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.model: Counter[str] = Counter()
        self.critic: Counter[str] = Counter()

    def add(self, kind: Literal["model", "critic"], task_id: str) -> None:
        with self._lock:
            (self.model if kind == "model" else self.critic)[task_id] += 1


def _draw(seed: int, messages: Sequence[BaseMessage]) -> random.Random:
    """The simulator's randomness for one model call: a pure function of the input messages and the seed."""
    return random.Random(hashlib.sha256(f"sim:{seed}:{digest_messages(messages)}".encode()).hexdigest())


def _recorded(messages: Sequence[BaseMessage]) -> list[int]:
    """The values of the record calls that ran (rolled-back proposals are no longer in the history)."""
    return [int(c["args"]["value"]) for m in messages if isinstance(m, AIMessage) for c in m.tool_calls]


def _proposal(scenario: SimScenario, error: float, messages: Sequence[BaseMessage]) -> tuple[bool, int]:
    """Whether the model's proposal for this input is a mistake, and its offset (0 if right).

    A retry (the input ends with a guard note) depends on the rolled-back proposal, recomputed from the input
    without the note: one recursion per trailing note.
    """
    rng = _draw(scenario.seed, messages)
    u, offset = rng.random(), rng.randint(1, 9)
    if messages and is_guard_note(messages[-1]):
        before, _ = _proposal(scenario, error, messages[:-1])
        mistake = u >= scenario.recover if before else u < scenario.disrupt
    else:
        mistake = u < error
    return mistake, offset if mistake else 0


def sim_model(scenario: SimScenario, counts: SimCounts | None = None) -> ScriptedChatModel:
    """The simulated agent's chat model (module docstring); ``counts`` counts its calls per task id."""

    def policy(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage:
        # The draws come from _draw, not rng: a retry must recompute the rolled-back proposal from a shorter input.
        found = _find_task(messages)
        if found is None:
            raise ValueError("the simulated model needs a simulator task prompt (see sim_input)")
        task, _ = found
        if counts is not None:
            counts.add("model", task.task_id)
        done = _recorded(messages)
        step = len(done)
        mistake, offset = _proposal(scenario, scenario.task_error(task.task_id), messages)
        retry = 0
        for m in reversed(messages):
            if not is_guard_note(m):
                break
            retry += 1
        meta = {"sim": {"step": step, "retry": retry, "mistake": mistake}}
        if step < len(task.values):
            call = {"name": "record", "args": {"step": step, "value": task.values[step] + offset}, "id": None}
            return AIMessage(content="", tool_calls=[call], response_metadata=meta)
        return AIMessage(content=str(sum(done) + offset), response_metadata=meta)

    return ScriptedChatModel(policy=policy, seed=scenario.seed, model_name=f"sim-{scenario.name}")


def sim_agent(
    scenario: SimScenario,
    middleware: Sequence[Any] = (),
    checkpointer: Any = None,
    counts: SimCounts | None = None,
) -> Any:
    """A real ``create_agent`` graph of the simulated model and :func:`sim_tools`."""
    return create_agent(
        sim_model(scenario, counts), sim_tools(), middleware=list(middleware), checkpointer=checkpointer
    )


SCENARIOS: tuple[SimScenario, ...] = (
    SimScenario(
        "hotpotqa_harm",
        step_error=0.045,
        critic_auroc=0.75,
        recover=0.5,
        disrupt=0.3,
        critic_shift=-0.5,
        description="HotPotQA-like: high success (p = 0.24), the critic flags many right steps, intervention harms",
    ),
    SimScenario(
        "alfworld_small_help",
        step_error=0.31,
        critic_auroc=0.8,
        recover=0.8,
        disrupt=0.65,
        critic_shift=0.5,
        description="ALFWorld-like: low success (p = 0.89), r = 0.13, d = 0.52, intervention helps a little",
    ),
    SimScenario(
        "null",
        step_error=0.11,
        critic_auroc=0.75,
        recover=0.55,
        disrupt=0.3,
        critic_shift=-0.2,
        description="null effect: p = 0.5, recoveries and disruptions cancel (|net| < 0.002)",
    ),
    SimScenario(
        "hotpotqa_harm_correlated",
        step_error=0.07,
        critic_auroc=0.75,
        recover=0.5,
        disrupt=0.3,
        critic_shift=-0.5,
        task_spread=0.2,
        description="HotPotQA-like with hard and easy tasks: reruns of a task correlate (icc 0.48), intervention harms",
    ),
)
"""Starting points for the regimes; ``benchmarks/sim_truth.py`` gives their exact p, r, d, net and p_star."""
