"""Where an evaluation's results go: `<output>/<run>/results.json` and, with log_samples,
`samples_<task>.jsonl` (input, reference, output and scores of each sample) beside it.

Samples are written before results.json, so a reader that finds results.json finds the samples it lists.
"""

from __future__ import annotations

import json
from typing import Any

from kaizen_api.results import EvalResults
from kaizen_api.runconfig import RunLocation

from kaizen_runner.eval.errors import EvalError

RESULTS_FILE = "results.json"


def samples_file(task: str) -> str:
    return f"samples_{task}.jsonl"


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows).encode()


def write_results(output: RunLocation, results: EvalResults, samples: dict[str, list[dict[str, Any]]]) -> str:
    """Write the files; returns the run folder's URI."""
    from kaizen_runner.storage import StorageError
    from kaizen_runner.train.errors import RunnerError
    from kaizen_runner.train.store import open_store

    try:
        store = open_store(output).child(results.run_name)
        names = []
        for task, rows in samples.items():
            store.put_bytes(jsonl(rows), samples_file(task))
            names.append(samples_file(task))
        results.samples_files = names or None
        body = results.model_dump_json(by_alias=True, exclude_none=True, indent=2)
        store.put_bytes(body.encode(), RESULTS_FILE)
    except (StorageError, RunnerError, OSError) as err:
        raise EvalError("StorageError", f"cannot write results to {output.uri}: {err}") from err
    return store.uri
