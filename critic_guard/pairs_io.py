"""Reading paired outcomes from files: JSON Lines or CSV, one pair per row.

JSONL rows look like ``{"control": true, "treatment": false}`` (``control_success`` / ``treatment_success`` are
accepted as key names, 1/0 as values; other keys such as a task id are ignored). CSV files have a header row with
``control`` and ``treatment`` columns (or the ``*_success`` names) holding true/false or 1/0. The format is chosen by
the file suffix: ``.csv`` is CSV, anything else JSON Lines.

Every problem is raised as :class:`PairsFileError` naming the file and line, so a CLI can print it on one line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from critic_guard.stats.counts import PairedCounts

_KEYS = {"control": ("control", "control_success"), "treatment": ("treatment", "treatment_success")}
_TEXT_OUTCOMES = {"true": True, "false": False, "1": True, "0": False}


class PairsFileError(ValueError):
    """A pairs file that cannot be read or parsed."""


def _pick(row: Mapping[str, object], arm: str, where: str) -> object:
    present = [key for key in _KEYS[arm] if key in row]
    if len(present) != 1:
        names = " or ".join(repr(k) for k in _KEYS[arm])
        problem = "both" if present else "neither"
        raise PairsFileError(f"{where}: expected exactly one of {names}, found {problem}")
    return row[present[0]]


def _json_outcome(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise PairsFileError(f"{where}: an outcome must be true/false or 1/0, got {json.dumps(value)}")


def _text_outcome(value: object, where: str) -> bool:
    text = str(value).strip().lower() if value is not None else ""
    if text not in _TEXT_OUTCOMES:
        raise PairsFileError(f"{where}: an outcome must be true/false or 1/0, got {value!r}")
    return _TEXT_OUTCOMES[text]


def _jsonl_pairs(path: Path, lines: list[str]) -> Iterator[tuple[bool, bool]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PairsFileError(f"{where}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise PairsFileError(f"{where}: JSON nested too deeply (a pair is one flat object)") from None
        if not isinstance(row, dict):
            raise PairsFileError(f"{where}: expected a JSON object per line")
        yield _json_outcome(_pick(row, "control", where), where), _json_outcome(_pick(row, "treatment", where), where)


def _csv_pairs(path: Path, lines: list[str]) -> Iterator[tuple[bool, bool]]:
    reader = csv.DictReader(lines)
    try:
        if reader.fieldnames is None:
            return
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row:
                raise PairsFileError(f"{where}: more fields than the header has")
            yield (
                _text_outcome(_pick(row, "control", where), where),
                _text_outcome(_pick(row, "treatment", where), where),
            )
    except csv.Error as exc:  # e.g. a field over csv.field_size_limit() (128 KiB): not a pairs file
        raise PairsFileError(f"{path}:{reader.line_num + 1}: not valid CSV ({exc})") from None


def read_pair_list(path: str | Path) -> list[tuple[bool, bool]]:
    """The ``(control, treatment)`` pairs of a JSONL or CSV file in file order (the report plots them over time);
    an empty file is an error (there is nothing to analyse)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: tolerate a BOM from spreadsheet exports
    except FileNotFoundError:
        raise PairsFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise PairsFileError(f"{path}: is a directory, not a pairs file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PairsFileError(f"{path}: cannot read ({exc})") from None
    reader = _csv_pairs if path.suffix.lower() == ".csv" else _jsonl_pairs
    pairs = list(reader(path, lines))
    if not pairs:
        raise PairsFileError(f"{path}: no pairs found")
    return pairs


def read_pairs(path: str | Path) -> PairedCounts:
    """Count the pairs in a JSONL or CSV file; an empty file is an error (there is nothing to analyse)."""
    return PairedCounts.from_pairs(read_pair_list(path))
