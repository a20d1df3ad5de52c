"""TextWorld as a forkable tool environment, with games generated offline by code and cached on disk.

Why TextWorld: its games are generated from a seed (no download), the engine knows the winning plan from any state
(``policy_commands``), and ``won`` is the official judge. That makes it a real environment in which a scripted agent
can follow the oracle plan with injected mistakes, and in which a mistake really can be fatal (eating an ingredient
the recipe needs loses the game) or merely costly (a detour changes the plan).

The agent has one tool, ``command(text)``. A fork replays the command prefix on a fresh copy of the same game file
(docs/pilot-design.md, "Why fork at the first flag": "a replay of the tool-call prefix on a fresh one"), and checks that
every replayed observation equals the recorded one, so a nondeterministic game can never yield a silently different
branch.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal

import textworld
import textworld.challenges
import textworld.generator
from jericho.jericho import UnsupportedGameWarning

from benchmarks.envs.base import TaskEnded, ToolCall, ToolSpec

GameKind = Literal["tw-cooking", "custom"]

COOKING_DEFAULTS: Final[Mapping[str, Any]] = {"recipe": 2, "take": 2, "go": 6, "open": True, "cook": True, "cut": True}
"""A cooking game whose oracle plan has 12 steps: walk, open, take, cook and cut, then prepare and eat the meal."""

CUSTOM_DEFAULTS: Final[Mapping[str, Any]] = {"world_size": 5, "nb_objects": 10, "quest_length": 5}
"""``tw-make custom`` with a five-step quest in five rooms."""

_CUSTOM_KEYS: Final = frozenset({"world_size", "nb_objects", "quest_length", "quest_breadth"})
_MAX_VALIDATION_STEPS: Final = 500

COMMAND_TOOL: Final = ToolSpec(
    name="command",
    description=(
        "Send one command to the text game, e.g. 'go north', 'open fridge', 'take knife from counter', "
        "'examine cookbook', 'inventory'. Returns what the game prints in response."
    ),
    parameters={
        "type": "object",
        "properties": {"text": {"type": "string", "description": "The command, in plain words."}},
        "required": ["text"],
        "additionalProperties": False,
    },
)

_INFOS: Final = textworld.EnvInfos(
    objective=True,
    description=True,
    admissible_commands=True,
    policy_commands=True,
    won=True,
    lost=True,
    score=True,
    max_score=True,
)


class GameGenerationError(RuntimeError):
    """The generator produced a game the oracle plan cannot win (TextWorld's planner gave up on it)."""


def make_game(kind: GameKind, seed: int, cache_dir: str | Path, **settings: Any) -> Path:
    """Generate a TextWorld game offline, or return the cached one; the path of its ``.z8`` file.

    ``kind`` is ``"tw-cooking"`` (settings: the challenge's options, e.g. ``recipe``, ``take``, ``go``, ``open``,
    ``cook``, ``cut``; defaults :data:`COOKING_DEFAULTS`) or ``"custom"`` (``world_size``, ``nb_objects``,
    ``quest_length``, ``quest_breadth``; defaults :data:`CUSTOM_DEFAULTS`). The file name carries a digest of the kind,
    seed, resolved settings and TextWorld version, so a cache hit is the same game. Each new game is verified to be
    won by its oracle plan before it enters the cache; files appear atomically, so an interrupted generation never
    leaves a half-written game behind.
    """
    name = game_name(kind, seed, **settings)
    resolved = _resolve_settings(kind, settings)
    cache = Path(cache_dir)
    target = cache / f"{name}.z8"
    if target.is_file() and target.with_suffix(".json").is_file():
        return target

    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
    try:
        with _quiet_jericho():
            built = _generate(kind, seed, resolved, scratch / name)
        _check_winnable(built)
        # The .json is the game's logic; the .z8 is what callers look for, so it moves last.
        os.replace(built.with_suffix(".json"), target.with_suffix(".json"))
        os.replace(built, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def game_name(kind: GameKind, seed: int, **settings: Any) -> str:
    """The cache file stem of a game: kind, seed and a digest of the resolved settings and TextWorld version."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    resolved = _resolve_settings(kind, settings)
    key = json.dumps(
        {"kind": kind, "seed": seed, "settings": resolved, "textworld": textworld.__version__}, sort_keys=True
    )
    return f"{kind}-s{seed}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _resolve_settings(kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    if kind == "tw-cooking":
        parser = argparse.ArgumentParser(prog="tw-cooking", add_help=False)
        _, _, add_arguments = textworld.challenges.CHALLENGES["tw-cooking"]
        add_arguments(parser)
        defaults = vars(parser.parse_args([]))
        merged = {**COOKING_DEFAULTS, **settings}
        unknown = sorted(set(merged) - set(defaults))
        if unknown:
            raise ValueError(f"unknown tw-cooking settings {unknown}; known: {sorted(defaults)}")
        argv: list[str] = []
        for key, value in merged.items():
            flag = "--" + key.replace("_", "-")
            if isinstance(defaults[key], bool):
                if not isinstance(value, bool):
                    raise ValueError(f"tw-cooking setting {key!r} is a flag, got {value!r}")
                argv += [flag] if value else []
            elif value is not None:
                argv += [flag, str(value)]
        try:
            return dict(sorted(vars(parser.parse_args(argv)).items()))
        except SystemExit as exc:  # argparse reports bad values by exiting
            raise ValueError(f"invalid tw-cooking settings {dict(merged)!r} (see the message above)") from exc
    if kind == "custom":
        merged = {**CUSTOM_DEFAULTS, **settings}
        unknown = sorted(set(merged) - _CUSTOM_KEYS)
        if unknown:
            raise ValueError(f"unknown custom settings {unknown}; known: {sorted(_CUSTOM_KEYS)}")
        for key, value in merged.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"custom setting {key!r} must be a positive int, got {value!r}")
        return dict(sorted(merged.items()))
    raise ValueError(f"unknown game kind {kind!r}; expected 'tw-cooking' or 'custom'")


def _generate(kind: str, seed: int, settings: dict[str, Any], path: Path) -> Path:
    """The same calls ``tw-make`` makes, in process (no subprocess, no network)."""
    options = textworld.GameOptions()
    options.seeds = seed
    options.path = str(path)
    options.file_ext = ".z8"
    options.force_recompile = True
    if kind == "tw-cooking":
        _, make, _ = textworld.challenges.CHALLENGES["tw-cooking"]
        game = make(settings=dict(settings), options=options)
        return Path(textworld.generator.compile_game(game, options))
    options.nb_rooms = settings["world_size"]
    options.nb_objects = settings["nb_objects"]
    length = settings["quest_length"]
    options.chaining.min_length = options.chaining.max_length = options.chaining.max_depth = length
    if "quest_breadth" in settings:
        options.chaining.min_breadth = options.chaining.max_breadth = settings["quest_breadth"]
    game_file, _ = textworld.make(options)
    return Path(game_file)


def _check_winnable(game_file: Path) -> None:
    env = TextWorldEnv(game_file)
    try:
        for _ in range(_MAX_VALIDATION_STEPS):
            action = env.oracle_next()
            if action is None:
                break
            env.step(*action)
        if not env.success():
            raise GameGenerationError(
                f"{game_file.name}: following policy_commands does not win (moves: {list(env.commands)}); "
                "TextWorld's planner fails on some settings, e.g. tw-cooking with 'drop'"
            )
    finally:
        env.close()


@contextlib.contextmanager
def _quiet_jericho() -> Iterator[None]:
    """Silence Jericho's "unsupported game" warnings: TextWorld does the score and action tracking itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupportedGameWarning)
        yield


def clean_feedback(feedback: str) -> str:
    """The game's text without the trailing input prompt (``>`` plus padding and status line)."""
    text = feedback.rstrip()
    cut = text.rfind("\n>")
    if cut != -1:
        text = text[:cut]
    elif text.startswith(">"):
        text = ""
    return text.strip()


class TextWorldEnv:
    """One TextWorld game as an :class:`~benchmarks.envs.base.Environment` with the single tool ``command``.

    The instruction is the game's objective followed by the description of the starting room. The oracle is the
    first of TextWorld's ``policy_commands`` (the planner's shortest winning plan from the current state); success is
    ``won``. A task has one turn: ``next_turn()`` ends it.
    """

    def __init__(self, game_file: str | Path) -> None:
        path = Path(game_file)
        if not path.is_file():
            raise FileNotFoundError(f"no TextWorld game at {path}")
        self._game_file = path
        with _quiet_jericho():
            self._env = textworld.start(str(path), request_infos=_INFOS)
            self._state = self._env.reset()
        self._instruction = f"{self._state['objective']}\n\n{self._state['description']}".strip()
        self._commands: list[str] = []
        self._observations: list[str] = []
        self._ended = False
        self._closed = False

    # -- Environment protocol -------------------------------------------------------------------------------------

    @property
    def task_id(self) -> str:
        return self._game_file.stem

    @property
    def instruction(self) -> str:
        return self._instruction

    @property
    def tools(self) -> tuple[ToolSpec, ...]:
        return (COMMAND_TOOL,)

    @property
    def turn(self) -> int:
        return 1 if self._ended else 0

    @property
    def n_turns(self) -> int:
        return 1

    @property
    def done(self) -> bool:
        return self._ended or self.won or self.lost

    def step(self, tool_name: str, args: Mapping[str, Any]) -> str:
        if self._ended:
            raise TaskEnded(f"{self.task_id}: the task is over (next_turn() ended it)")
        if tool_name != COMMAND_TOOL.name:
            return f"Error: unknown tool {tool_name!r}; the only tool is 'command'."
        text = args.get("text") if isinstance(args, Mapping) else None
        if not isinstance(text, str) or not text.strip() or set(args) != {"text"}:
            return "Error: 'command' takes exactly one argument, 'text', a non-empty string."
        if self.won or self.lost:
            return "The game is over; no further commands are accepted."
        return self._play(text)

    def next_turn(self) -> str | None:
        self._ended = True
        return None

    def fork(self) -> TextWorldEnv:
        clone = TextWorldEnv(self._game_file)
        for index, (command, expected) in enumerate(zip(self._commands, self._observations, strict=True)):
            replayed = clone._play(command)
            if replayed != expected:
                clone.close()
                raise RuntimeError(
                    f"{self.task_id}: replay diverged at move {index} ({command!r}): "
                    f"recorded {expected!r}, replayed {replayed!r}"
                )
        clone._ended = self._ended
        return clone

    def oracle_next(self) -> ToolCall | None:
        if self.done or not self._state["policy_commands"]:
            return None
        return ToolCall(COMMAND_TOOL.name, {"text": self._state["policy_commands"][0]})

    def success(self) -> bool:
        return self.won

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._env.close()

    # -- TextWorld specifics ---------------------------------------------------------------------------------------

    @property
    def game_file(self) -> Path:
        return self._game_file

    @property
    def won(self) -> bool:
        return bool(self._state["won"])

    @property
    def lost(self) -> bool:
        return bool(self._state["lost"])

    @property
    def score(self) -> int:
        return int(self._state["score"])

    @property
    def max_score(self) -> int:
        return int(self._state["max_score"])

    @property
    def commands(self) -> tuple[str, ...]:
        """The commands played so far (the prefix a fork replays)."""
        return tuple(self._commands)

    @property
    def admissible_commands(self) -> tuple[str, ...]:
        """Every command the game understands in this state: the pool for plausible injected mistakes."""
        return tuple(self._state["admissible_commands"] or ())

    @property
    def policy_commands(self) -> tuple[str, ...]:
        """TextWorld's current winning plan (empty once the game is over or cannot be won any more)."""
        return tuple(self._state["policy_commands"] or ())

    def _play(self, command: str) -> str:
        with _quiet_jericho():
            self._state, _, _ = self._env.step(command)
        observation = clean_feedback(self._state.feedback)
        self._commands.append(command)
        self._observations.append(observation)
        return observation
