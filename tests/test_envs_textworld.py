"""TextWorld environment (benchmarks/envs/textworld_env.py): generated games, oracle plan, mistakes, forks."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import in_ci

try:
    import textworld  # noqa: F401
except ImportError:
    if in_ci():
        raise
    pytest.skip("textworld is not installed: run `make bench-envs`", allow_module_level=True)

from benchmarks.envs.base import Environment, TaskEnded, ToolCall
from benchmarks.envs.textworld_env import TextWorldEnv, clean_feedback, game_name, make_game

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "textworld"


@pytest.fixture(scope="module")
def cooking_game() -> Path:
    return make_game("tw-cooking", 1, CACHE)


@pytest.fixture(scope="module")
def custom_game() -> Path:
    return make_game("custom", 1, CACHE)


def play_oracle(env: TextWorldEnv, limit: int = 100) -> int:
    """Follow the oracle until it has nothing to say; the number of moves made."""
    moves = 0
    while (action := env.oracle_next()) is not None:
        assert moves < limit, "oracle did not finish"
        env.step(*action)
        moves += 1
    return moves


@pytest.mark.parametrize(("game", "plan_length"), [("cooking_game", 12), ("custom_game", 5)])
def test_oracle_plan_wins(game: str, plan_length: int, request: pytest.FixtureRequest) -> None:
    env = TextWorldEnv(request.getfixturevalue(game))
    try:
        assert isinstance(env, Environment)
        assert env.tools[0].name == "command" and len(env.tools) == 1
        assert (env.turn, env.n_turns, env.done) == (0, 1, False)
        plan = env.policy_commands
        assert len(plan) == plan_length
        assert env.oracle_next() == ToolCall("command", {"text": plan[0]})

        assert play_oracle(env) == plan_length
        assert env.commands == plan  # the plan does not change when it is followed
        assert env.won and not env.lost and env.done and env.success()
        assert env.score == env.max_score > 0
        assert env.oracle_next() is None
        assert env.step("command", {"text": "look"}) == "The game is over; no further commands are accepted."
        assert env.commands == plan
    finally:
        env.close()


def test_instruction_is_objective_and_first_room(cooking_game: Path) -> None:
    env = TextWorldEnv(cooking_game)
    try:
        objective, room = env.instruction.split("\n\n", 1)
        assert objective.startswith("You are hungry! Let's cook a delicious meal.")
        assert room.startswith("-= ") and "=-" in room.splitlines()[0]
        assert env.task_id == cooking_game.stem
    finally:
        env.close()


def test_detour_changes_the_oracle_and_is_recoverable(cooking_game: Path) -> None:
    env = TextWorldEnv(cooking_game)
    try:
        plan_length = len(env.policy_commands)
        # Follow the plan until a move to another room is possible that the plan does not want.
        while True:
            oracle = env.oracle_next()
            assert oracle is not None, "no state offered a detour"
            detours = [c for c in env.admissible_commands if c.startswith("go ") and c != oracle.args["text"]]
            if detours:
                break
            env.step(*oracle)
        moves_before = len(env.commands)
        env.step("command", {"text": detours[0]})
        back = {"north": "south", "south": "north", "east": "west", "west": "east"}[detours[0].split()[1]]
        assert env.oracle_next() == ToolCall("command", {"text": f"go {back}"})
        play_oracle(env)
        assert env.success()
        assert len(env.commands) == plan_length + 2  # the detour and the way back
        assert len(env.commands) > moves_before
    finally:
        env.close()


def test_eating_a_needed_ingredient_loses(cooking_game: Path) -> None:
    env = TextWorldEnv(cooking_game)
    try:
        # Follow the plan until an ingredient can be eaten, then eat it in a fork.
        while not (edible := [c for c in env.admissible_commands if c.startswith("eat ") and c != "eat meal"]):
            action = env.oracle_next()
            assert action is not None, "no ingredient was ever edible"
            env.step(*action)
        fork = env.fork()
        try:
            fork.step("command", {"text": edible[0]})
            assert fork.lost and fork.done and not fork.success()
            assert fork.oracle_next() is None
        finally:
            fork.close()
        assert not env.lost and env.oracle_next() is not None
        play_oracle(env)
        assert env.success()
    finally:
        env.close()


def test_fork_is_independent_and_starts_from_the_same_state(cooking_game: Path) -> None:
    env = TextWorldEnv(cooking_game)
    try:
        for _ in range(3):
            env.step(*env.oracle_next())  # type: ignore[misc]
        fork = env.fork()
        try:
            assert fork.commands == env.commands
            assert fork.oracle_next() == env.oracle_next()
            assert fork.admissible_commands == env.admissible_commands
            snapshot = (env.commands, env.oracle_next(), env.admissible_commands, env.score)

            fork.step("command", {"text": "inventory"})
            play_oracle(fork)
            assert fork.success()
            assert (env.commands, env.oracle_next(), env.admissible_commands, env.score) == snapshot

            play_oracle(env)
            assert env.success() and env.commands == fork.commands[:3] + fork.commands[4:]
        finally:
            fork.close()
    finally:
        env.close()


def test_model_mistakes_are_observations_and_harness_misuse_raises(cooking_game: Path) -> None:
    env = TextWorldEnv(cooking_game)
    try:
        assert env.step("shell", {"text": "go north"}) == "Error: unknown tool 'shell'; the only tool is 'command'."
        bad_args = "Error: 'command' takes exactly one argument, 'text', a non-empty string."
        assert env.step("command", {"cmd": "go north"}) == bad_args
        assert env.step("command", {"text": "  "}) == bad_args
        assert env.step("command", {"text": "go north", "x": 1}) == bad_args
        assert env.commands == ()
        assert env.step("command", {"text": "dance"}) != ""  # the game answers nonsense itself
        assert env.commands == ("dance",)
        assert env.next_turn() is None
        assert env.done and env.turn == 1 and not env.success()
        with pytest.raises(TaskEnded):
            env.step("command", {"text": "look"})
    finally:
        env.close()
    with pytest.raises(FileNotFoundError):
        TextWorldEnv(CACHE / "no-such-game.z8")


def test_generation_is_cached_and_keyed_by_settings(cooking_game: Path) -> None:
    mtime = cooking_game.stat().st_mtime_ns
    assert make_game("tw-cooking", 1, CACHE) == cooking_game
    assert cooking_game.stat().st_mtime_ns == mtime  # not generated again
    assert cooking_game.with_suffix(".json").is_file()
    assert not [p for p in CACHE.iterdir() if p.name.startswith(".tmp-")]

    same_settings = make_game("tw-cooking", 1, CACHE, recipe=2, take=2, go=6, open=True, cook=True, cut=True)
    assert same_settings == cooking_game
    assert cooking_game.stem == game_name("tw-cooking", 1)
    assert cooking_game.stem.startswith("tw-cooking-s1-")
    assert len({game_name("tw-cooking", 1), game_name("tw-cooking", 2), game_name("tw-cooking", 1, go=9)}) == 3
    assert game_name("custom", 1) != game_name("custom", 1, quest_length=4)


def test_bad_generation_requests_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown game kind"):
        make_game("tw-coin", 1, tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown tw-cooking settings"):
        make_game("tw-cooking", 1, tmp_path, recipes=2)
    with pytest.raises(ValueError, match="is a flag"):
        make_game("tw-cooking", 1, tmp_path, cook=1)
    with pytest.raises(ValueError, match="invalid tw-cooking settings"):
        make_game("tw-cooking", 1, tmp_path, go=7)
    with pytest.raises(ValueError, match="positive int"):
        make_game("custom", 1, tmp_path, quest_length=0)
    with pytest.raises(ValueError, match="seed"):
        make_game("custom", -1, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_clean_feedback_drops_the_prompt_and_status_line() -> None:
    assert clean_feedback("You can't go that way.\n\n\n>   ") == "You can't go that way."
    assert clean_feedback("Taken.\n\n>        -= Kitchen =-1/8") == "Taken."
    assert clean_feedback(">  ") == ""
    assert clean_feedback("No prompt here.\n") == "No prompt here."
