"""A run configuration file as data: JSON, or YAML by its suffix (.yaml, .yml).

A file that cannot be read or parsed is the user's to fix (ConfigInvalid, no retry), so every way it
can fail becomes a RunnerError naming the file and, for a syntax error, the line and column. The
message never quotes the line itself: a configuration may hold a secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kaizen_runner.train.errors import RunnerError


def read_config(path: Path) -> dict[str, Any]:
    """The configuration's top-level object, not yet validated against its schema."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RunnerError(f"cannot read the run configuration {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise RunnerError(f"the run configuration {path} is not UTF-8 text (byte {err.start})") from err
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise RunnerError(
                f"the run configuration {path} is not valid YAML: {_yaml_problem(err)}"
            ) from err
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise RunnerError(
                f"the run configuration {path} is not valid JSON: {err.msg} "
                f"at line {err.lineno}, column {err.colno}"
            ) from err
    if not isinstance(data, dict):
        raise RunnerError(f"the run configuration {path} is not an object")
    return data


def _yaml_problem(err: Any) -> str:
    """PyYAML's description of a syntax error and where it is (its str() would quote the line)."""
    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
    if problem is None:  # not a syntax error (e.g. a character YAML refuses): its first line says what
        return str(err).splitlines()[0]
    context = getattr(err, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{context}: {problem}{where}" if context else f"{problem}{where}"
