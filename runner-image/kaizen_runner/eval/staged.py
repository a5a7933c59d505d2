"""Staged benchmark data: what a cluster copies in ahead of time, because evaluation pods run offline.

Layout under the staged location (a mounted volume, or an s3:// prefix copied in on first use):

    lm-eval/hf/            a Hugging Face home: datasets/ holds the harness tasks' cached datasets
    lm-eval/tasks/         optional lm-eval YAML tasks, overriding built-in ones (e.g. data_files on disk)
    nejumi/jaster/         llm-jp-eval evaluation files, <task>.json
    nejumi/jbbq/           JBBQ records, *.jsonl
    nejumi/jtruthfulqa/    jtruthfulqa.jsonl (or .csv) and classifier/ (nlp-waseda/roberta_jtruthfulqa)
    vlmevalkit/            VLMEvalKit TSVs: ChartQA_TEST.tsv, DocVQA_VAL.tsv, InfoVQA_VAL.tsv, ...

docs/evaluation.md says how to produce each of them.
"""

from __future__ import annotations

from pathlib import Path

from kaizen_api.evalconfig import EvalRunConfig
from kaizen_api.results import USER_ERROR_REASONS

from kaizen_runner.eval.errors import EvalError

SUITE_FOLDERS = {"lm-eval-harness": "lm-eval", "nejumi-leaderboard3": "nejumi", "vlmevalkit": "vlmevalkit"}
HOW = "stage the data as docs/evaluation.md ('Staging benchmark data') describes"


def not_staged(what: str) -> EvalError:
    return EvalError("DataNotStaged", f"{what} is not staged; {HOW}")


def staged_root(cfg: EvalRunConfig, work_dir: Path | None = None) -> Path:
    """The local folder of this suite's staged data (downloaded once from s3:// into `work_dir`)."""
    folder = SUITE_FOLDERS[cfg.suite]
    if cfg.staged_data is None:
        raise EvalError(
            "DataNotStaged",
            f"suite {cfg.suite} runs offline and no staged data location is configured (stagedData); {HOW}",
        )
    uri = cfg.staged_data.uri
    if uri.startswith("s3://"):
        from kaizen_runner.storage import StorageError
        from kaizen_runner.train.errors import RunnerError
        from kaizen_runner.train.failures import classify
        from kaizen_runner.train.store import open_store

        target = (work_dir or Path("/tmp/kaizen-work")) / "staged" / folder
        marker = target / ".kaizen-staged"
        if not marker.is_file():
            try:
                open_store(cfg.staged_data).child(folder).download("", target)
            except (RunnerError, StorageError) as err:
                reason, message = classify(err)
                if reason not in USER_ERROR_REASONS:  # the data may be there: a retry may reach it
                    raise EvalError(
                        reason, f"cannot download staged data {uri}/{folder}/: {message}"
                    ) from err
                raise not_staged(f"{uri}/{folder}/ ({message})") from err
            marker.write_text(uri)
        return target
    root = Path(uri.removeprefix("file://")) / folder
    if not root.is_dir():
        raise not_staged(f"{root}")
    return root


def staged_file(root: Path, *candidates: str) -> Path:
    """The first of `candidates` (relative paths) present under `root`."""
    for name in candidates:
        if (root / name).is_file():
            return root / name
    raise not_staged(" or ".join(str(root / c) for c in candidates))
