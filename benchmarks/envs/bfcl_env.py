"""BFCL v4 multi-turn tasks as forkable tool environments, judged by the official ``multi_turn_checker``.

Why BFCL multi-turn: its tasks ship with the package (200 per category, no download), its APIs (a file system, a
trading bot, a travel agency, ...) are plain Python classes whose state is the world, and its judge executes the
agent's calls and the ground truth side by side from the initial state and compares the resulting states and
responses. A scripted agent can replay the ground truth with injected errors, and the official judge decides.

How a task maps onto :class:`~benchmarks.envs.base.Environment`:

* tools: the function docs of the task's API classes (what BFCL shows a function-calling model), converted to JSON
  schema the way BFCL's OpenAI handler does; ``multi_turn_miss_func`` adds the held-out functions at their turn.
* turns: ``instruction`` is the current user message; the harness calls ``next_turn()`` when the agent answers
  without a tool call, as BFCL's inference loop does.
* step: calls the method on this environment's own API instances and formats the result as BFCL's executor does.
  Each call is also recorded as the string BFCL would decode from a function-calling model
  (``name(k=repr(v),...)``); the judge replays those strings.
* fork: deep copy of the API instances (their seeded RNGs included) plus the executed-call log. Our instances never
  enter the module globals BFCL's executor caches instances in, so forks cannot share state through them.
* oracle: the next ground-truth call of the current turn. A call that equals it (after binding positional arguments
  and defaults) advances the oracle; any other call does not, and its effect on the world stays: whether a mistake is
  fatal is the judge's business, not the oracle's.
* success: ``multi_turn_checker`` on the recorded calls, one step per call, with a fresh model name per check so its
  instance cache never mixes runs (the cache entries are removed afterwards).
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import bfcl_eval
from bfcl_eval.constants.category_mapping import VERSION_PREFIX
from bfcl_eval.constants.default_prompts import DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC
from bfcl_eval.constants.executable_backend_config import (
    CLASS_FILE_PATH_MAPPING,
    MULTI_TURN_FUNC_DOC_FILE_MAPPING,
    STATELESS_CLASSES,
)
from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
from bfcl_eval.eval_checker.multi_turn_eval import multi_turn_utils
from bfcl_eval.eval_checker.multi_turn_eval.multi_turn_checker import multi_turn_checker

from benchmarks.envs.base import TaskEnded, ToolCall, ToolSpec

CATEGORIES: Final = (
    "multi_turn_base",
    "multi_turn_long_context",
    "multi_turn_miss_param",
    "multi_turn_miss_func",
)
"""The multi-turn categories whose ground truth ships with ``bfcl-eval``."""

_DATA_DIR: Final = Path(bfcl_eval.__file__).resolve().parent / "data"
_PYTHON_HINT: Final = " Note that the provided function is in Python 3 syntax."
# BFCL's executor refuses these names before evaluating a call (multi_turn_utils.execute_multi_turn_func_call).
_FORBIDDEN: Final = frozenset({"kill", "exit", "quit", "remove", "unlink", "popen", "Popen", "run"})


@dataclass(frozen=True, slots=True)
class BfclTask:
    """One multi-turn entry with its ground truth, as loaded from the package's data files."""

    id: str
    category: str
    user_turns: tuple[str | None, ...]
    """The user message of each turn; ``None`` for a ``miss_func`` turn that only adds functions."""
    initial_config: Mapping[str, Any]
    involved_classes: tuple[str, ...]
    ground_truth: tuple[tuple[str, ...], ...]
    functions: tuple[Mapping[str, Any], ...]
    """Function docs shown from the first turn (held-out ones removed)."""
    held_out: Mapping[int, tuple[Mapping[str, Any], ...]]
    """Function docs added at a turn (``multi_turn_miss_func`` only)."""
    entry: Mapping[str, Any]
    """The raw dataset entry, as the official checker receives it."""

    @property
    def long_context(self) -> bool:
        """BFCL loads a larger scenario for these categories (same rule as its executor)."""
        return "long_context" in self.category or "composite" in self.category


def task_ids(category: str = "multi_turn_base") -> list[str]:
    """All task ids of a category, in file order."""
    return [task.id for task in _load_category(category)]


def load_tasks(
    category: str = "multi_turn_base", ids: Iterable[str] | None = None, limit: int | None = None
) -> list[BfclTask]:
    """Tasks of a category: all, the given ``ids`` (in that order), or the first ``limit``."""
    tasks = _load_category(category)
    if ids is not None:
        by_id = {task.id: task for task in tasks}
        wanted = list(ids)
        missing = [task_id for task_id in wanted if task_id not in by_id]
        if missing:
            raise KeyError(f"no task(s) {missing} in {category}")
        selected = [by_id[task_id] for task_id in wanted]
    else:
        selected = list(tasks)
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        selected = selected[:limit]
    return selected


@cache
def _load_category(category: str) -> tuple[BfclTask, ...]:
    if category not in CATEGORIES:
        raise ValueError(f"unknown BFCL multi-turn category {category!r}; expected one of {CATEGORIES}")
    entries = _read_jsonl(_DATA_DIR / f"{VERSION_PREFIX}_{category}.json")
    answers = {
        row["id"]: row["ground_truth"]
        for row in _read_jsonl(_DATA_DIR / "possible_answer" / f"{VERSION_PREFIX}_{category}.json")
    }
    return tuple(_make_task(category, entry, answers[entry["id"]]) for entry in entries)


def _make_task(category: str, entry: dict[str, Any], ground_truth: list[list[str]]) -> BfclTask:
    if len(ground_truth) != len(entry["question"]):
        raise ValueError(f"{entry['id']}: {len(ground_truth)} ground-truth turns for {len(entry['question'])} turns")
    # Same order and hold-out rule as bfcl_eval.utils.populate_test_cases_with_predefined_functions.
    functions = [doc for name in entry["involved_classes"] for doc in _class_docs(name)]
    held_out: dict[int, tuple[Mapping[str, Any], ...]] = {}
    for turn, names in entry.get("missed_function", {}).items():
        held_out[int(turn)] = tuple(doc for doc in functions if doc["name"] in names)
        functions = [doc for doc in functions if doc["name"] not in names]
    user_turns = tuple(
        "\n\n".join(message["content"] for message in messages if message["role"] == "user") if messages else None
        for messages in entry["question"]
    )
    return BfclTask(
        id=entry["id"],
        category=category,
        user_turns=user_turns,
        initial_config=entry["initial_config"],
        involved_classes=tuple(entry["involved_classes"]),
        ground_truth=tuple(tuple(turn) for turn in ground_truth),
        functions=tuple(functions),
        held_out=held_out,
        entry=entry,
    )


@cache
def _class_docs(class_name: str) -> tuple[Mapping[str, Any], ...]:
    return tuple(_read_jsonl(_DATA_DIR / "multi_turn_func_doc" / MULTI_TURN_FUNC_DOC_FILE_MAPPING[class_name]))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def tool_spec(doc: Mapping[str, Any]) -> ToolSpec:
    """A BFCL function doc as a JSON-schema tool, converted as BFCL's OpenAI function-calling handler does."""
    parameters = copy.deepcopy(dict(doc["parameters"]))
    parameters["type"] = "object"
    parameters["properties"] = _cast_types(parameters.get("properties", {}))
    return ToolSpec(name=doc["name"], description=doc["description"] + _PYTHON_HINT, parameters=parameters)


def _cast_types(properties: dict[str, Any]) -> dict[str, Any]:
    """BFCL's type names to JSON schema (``dict`` -> ``object``, ``float`` -> ``number`` with a hint, ...)."""
    for schema in properties.values():
        gorilla_type = schema.get("type", "string")
        if gorilla_type == "float":
            schema["format"] = "float"
            schema["description"] = schema.get("description", "") + " This is a float type value."
        schema["type"] = GORILLA_TO_OPENAPI.get(gorilla_type, "string")
        if "properties" in schema:
            schema["properties"] = _cast_types(schema["properties"])
        items = schema.get("items")
        if isinstance(items, dict) and "type" in items:
            items["type"] = GORILLA_TO_OPENAPI.get(items["type"], "string")
            if "properties" in items:
                items["properties"] = _cast_types(items["properties"])
    return properties


def format_call(name: str, args: Mapping[str, Any]) -> str:
    """The call string BFCL decodes from a function-calling model (``convert_to_function_call``)."""
    return f"{name}({','.join(f'{key}={value!r}' for key, value in args.items())})"


def parse_call(call: str) -> tuple[str, list[Any], dict[str, Any]]:
    """A ground-truth call string as ``(name, positional args, keyword args)``; only literal arguments."""
    node = ast.parse(call, mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a plain function call: {call!r}")
    keywords = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise ValueError(f"**kwargs in a ground-truth call: {call!r}")
        keywords[keyword.arg] = ast.literal_eval(keyword.value)
    return node.func.id, [ast.literal_eval(arg) for arg in node.args], keywords


def _check_json_like(value: Any, where: str) -> None:
    """Arguments must survive ``repr`` -> ``eval`` in the judge, as values decoded from JSON do."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: non-finite float {value!r}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json_like(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: dict key {key!r} is not a string")
            _check_json_like(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where}: {type(value).__name__} is not a JSON value")


def _format_result(result: Any) -> str:
    """How BFCL's executor turns a return value into the tool message."""
    if type(result) is str:
        return result
    if type(result) is dict:
        try:
            return json.dumps(result)
        except (TypeError, ValueError):
            return str(result)
    return str(result)


class BfclEnv:
    """One BFCL multi-turn task as an :class:`~benchmarks.envs.base.Environment` (see the module docstring)."""

    def __init__(self, task: BfclTask) -> None:
        self._task = task
        self._instances: dict[str, Any] = {}
        for class_name in task.involved_classes:
            module = importlib.import_module(CLASS_FILE_PATH_MAPPING[class_name])
            instance = getattr(module, class_name)()
            if class_name not in STATELESS_CLASSES:
                scenario = copy.deepcopy(dict(task.initial_config.get(class_name, {})))
                instance._load_scenario(scenario, long_context=task.long_context)
            self._instances[class_name] = instance
        # Method name -> owning class, later classes winning, as in BFCL's executor.
        self._owner: dict[str, str] = {}
        for class_name, instance in self._instances.items():
            for method_name, _ in inspect.getmembers(instance, predicate=inspect.ismethod):
                if not method_name.startswith("_"):
                    self._owner[method_name] = class_name
        self._tools = tuple(tool_spec(doc) for doc in task.functions)
        self._turn = 0
        self._gt_pos = 0
        self._calls: list[list[str]] = [[]]
        self._ended = False
        self._enter_turn()

    @classmethod
    def from_id(cls, task_id: str) -> BfclEnv:
        """The environment of a task id such as ``"multi_turn_base_12"``."""
        category = task_id.rsplit("_", 1)[0]
        (task,) = load_tasks(category, ids=[task_id])
        return cls(task)

    # -- Environment protocol -------------------------------------------------------------------------------------

    @property
    def task_id(self) -> str:
        return self._task.id

    @property
    def instruction(self) -> str:
        if self._ended:
            return ""
        message = self._task.user_turns[self._turn]
        return DEFAULT_USER_PROMPT_FOR_ADDITIONAL_FUNCTION_FC if message is None else message

    @property
    def tools(self) -> tuple[ToolSpec, ...]:
        return self._tools

    @property
    def turn(self) -> int:
        return self._turn

    @property
    def n_turns(self) -> int:
        return len(self._task.user_turns)

    @property
    def done(self) -> bool:
        return self._ended

    def step(self, tool_name: str, args: Mapping[str, Any]) -> str:
        if self._ended:
            raise TaskEnded(f"{self.task_id}: the task is over (next_turn() returned None)")
        if not isinstance(args, Mapping):
            raise TypeError(f"args must be a mapping, got {type(args).__name__}")
        # The APIs keep argument objects in their state; the caller's objects must not become part of the world
        # (BFCL's executor evaluates fresh literals for every call).
        call_args: dict[str, Any] = copy.deepcopy(dict(args))
        for key, value in call_args.items():
            if not isinstance(key, str):
                raise TypeError(f"argument name {key!r} is not a string")
            _check_json_like(value, f"{tool_name}.{key}")
        # Calls the judge could not replay as BFCL's executor would (unknown or forbidden names, argument names that
        # are not identifiers) cannot change any state there, so they are answered but not recorded.
        if tool_name in _FORBIDDEN:
            return f"Error during execution: Function call {tool_name} is not allowed."
        owner = self._owner.get(tool_name)
        if owner is None:
            return f"Error during execution: name '{tool_name}' is not defined"
        if not all(key.isidentifier() for key in call_args):
            return f"Error during execution: invalid argument names {sorted(call_args)} for {tool_name}"
        self._calls[self._turn].append(format_call(tool_name, call_args))
        expected = self.oracle_next()
        if expected is not None and self._same_call(tool_name, call_args, *expected):
            self._gt_pos += 1
        try:
            result = getattr(self._instances[owner], tool_name)(**call_args)
        except Exception as exc:  # the model sees the error, as it would in BFCL
            return f"Error during execution: {exc}"
        return _format_result(result)

    def next_turn(self) -> str | None:
        if self._ended:
            return None
        if self._turn + 1 >= self.n_turns:
            self._ended = True
            return None
        self._turn += 1
        self._gt_pos = 0
        self._calls.append([])
        self._enter_turn()
        return self.instruction

    def fork(self) -> BfclEnv:
        clone = copy.copy(self)
        clone._instances = copy.deepcopy(self._instances)  # one call: references between instances stay shared
        clone._calls = [list(turn) for turn in self._calls]
        return clone

    def oracle_next(self) -> ToolCall | None:
        if self._ended:
            return None
        ground_truth = self._task.ground_truth[self._turn]
        if self._gt_pos >= len(ground_truth):
            return None
        name, positional, keywords = parse_call(ground_truth[self._gt_pos])
        if positional:
            keywords = dict(self._signature(name).bind(*positional, **keywords).arguments)
        return ToolCall(name, keywords)

    def success(self) -> bool:
        return bool(self.official_result()["valid"])

    def close(self) -> None:
        """Nothing to release: the API instances are plain Python objects."""

    # -- BFCL specifics --------------------------------------------------------------------------------------------

    @property
    def task(self) -> BfclTask:
        return self._task

    @property
    def calls(self) -> tuple[tuple[str, ...], ...]:
        """The recorded call strings, one tuple per turn started."""
        return tuple(tuple(turn) for turn in self._calls)

    def state(self) -> dict[str, dict[str, Any]]:
        """A deep copy of every API instance's public attributes: what the judge compares."""
        return {
            class_name: copy.deepcopy({key: value for key, value in vars(instance).items() if not key.startswith("_")})
            for class_name, instance in self._instances.items()
        }

    def official_result(self) -> dict[str, Any]:
        """The official checker's verdict dict (``valid``, and ``error_type`` / ``error_message`` when invalid).

        Turns not reached count as turns without calls, like a run BFCL force-terminated. The checker caches API
        instances in its module globals keyed by model name and entry id; a fresh model name per check keeps
        checks apart, and its entries are dropped afterwards.
        """
        model_result = [[[call] for call in turn] for turn in self._calls]
        model_result += [[] for _ in range(self.n_turns - len(model_result))]
        model_name = f"critic_guard_{uuid.uuid4().hex}"
        try:
            verdict: dict[str, Any] = multi_turn_checker(
                model_result,
                [list(turn) for turn in self._task.ground_truth],
                copy.deepcopy(dict(self._task.entry)),
                self._task.category,
                model_name,
            )
            return verdict
        finally:
            cached = vars(multi_turn_utils)
            for key in [key for key in cached if key.startswith(model_name)]:
                del cached[key]

    def _enter_turn(self) -> None:
        added = self._task.held_out.get(self._turn, ())
        if added:
            self._tools = self._tools + tuple(tool_spec(doc) for doc in added)

    def _signature(self, name: str) -> inspect.Signature:
        return inspect.signature(getattr(self._instances[self._owner[name]], name))

    def _same_call(self, name: str, args: dict[str, Any], expected_name: str, expected_args: dict[str, Any]) -> bool:
        """Equal calls after binding to the method's signature and filling in defaults."""
        if name != expected_name:
            return False
        signature = self._signature(name)
        try:
            got, want = signature.bind(**args), signature.bind(**expected_args)
        except TypeError:
            return False
        got.apply_defaults()
        want.apply_defaults()
        return got.arguments == want.arguments
