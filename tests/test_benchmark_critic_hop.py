"""The critic-hop benchmark's smoke run: every variant is measured and the hop is reported."""

from __future__ import annotations

import asyncio
import re

import pytest

from benchmarks import critic_hop


def test_the_smoke_run_reports_every_variant_and_the_hop(capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(critic_hop.main(calls=20, rounds=2))
    out = capsys.readouterr().out
    for label in (
        "areview, async critic on the guard's loop",
        "areview, async critic awaited inline (no timeout)",
        "bare run_coroutine_threadsafe round trip",
        "review, sync critic in the worker pool",
    ):
        assert re.search(rf"{re.escape(label)}\s+\d+\.\d", out), label
    assert re.search(r"the hop adds -?\d+\.\d µs per step", out)
