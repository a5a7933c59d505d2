"""Bring-your-own predictions: JSON or JSONL records of {prediction, reference} (optionally input).

As with Bedrock's precomputed inference, a user who already has the model's outputs scores them
without loading any model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaizen_api.runconfig import RunLocation

from kaizen_runner.eval.errors import EvalError

MAX_BYTES = 100 * 1024 * 1024  # the SPEC's upload limit


@dataclass(frozen=True)
class Pair:
    index: int
    prediction: str
    reference: str
    input: Any = None


def _records(text: str, name: str) -> list[Any]:
    stripped = text.lstrip("\ufeff").strip()
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise EvalError("DataInvalid", f"{name}: not valid JSON: {err}") from err
        return list(data)
    rows = []
    for number, line in enumerate(stripped.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise EvalError("DataInvalid", f"{name}: line {number} is not valid JSON: {err.msg}") from err
    return rows


def parse_pairs(text: str, name: str) -> list[Pair]:
    """Every record, or an error naming the first bad record and field."""
    pairs = []
    for index, row in enumerate(_records(text, name)):
        if not isinstance(row, dict):
            raise EvalError("DataInvalid", f"{name}: record {index} is not an object")
        for key in ("prediction", "reference"):
            if not isinstance(row.get(key), str):
                problem = "missing" if key not in row else "not a string"
                raise EvalError("DataInvalid", f"{name}: record {index}: {key!r} is {problem}")
        pairs.append(Pair(index, row["prediction"], row["reference"], row.get("input", row.get("prompt"))))
    if not pairs:
        raise EvalError("DataInvalid", f"{name}: no records")
    return pairs


def read_pairs(location: RunLocation) -> list[Pair]:
    """Pairs from a local file or an s3:// object (through the location's connection)."""
    uri = location.uri
    if uri.startswith("s3://"):
        from kaizen_runner.storage import StorageError, parse_s3_url
        from kaizen_runner.train.connections import object_store
        from kaizen_runner.train.failures import classify

        try:
            bucket, key = parse_s3_url(uri)
            data = object_store(location.connection).get_bytes(bucket, key, max_bytes=MAX_BYTES)
        except StorageError as err:  # an unreachable endpoint is retried, a missing object is the user's
            reason, message = classify(err)
            raise EvalError(reason, f"predictions {uri}: {message}") from err
    else:
        path = Path(uri.removeprefix("file://"))
        if not path.is_file():
            raise EvalError("DataInvalid", f"{uri}: no such file")
        if path.stat().st_size > MAX_BYTES:
            raise EvalError("DataInvalid", f"{uri}: larger than 100 MB")
        data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise EvalError("DataInvalid", f"{uri}: not UTF-8 text") from err
    return parse_pairs(text, uri)
