"""`kaizen-runner eval --config eval.json`: one evaluation run; `kaizen-runner eval score FILE`: score
{prediction, reference} pairs with the standard metrics, no model needed.

    kaizen-runner eval score pairs.jsonl --metrics bleu,rouge1,rougeL [--json] [--samples]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_WORK_DIR = "/tmp/kaizen-work"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a model, or score given predictions", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", type=Path, help="EvalRunConfig as JSON or YAML")
    parser.add_argument(
        "--output-dir", help="write results under this folder or s3:// URI, not config.output"
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(os.environ.get("KAIZEN_WORK_DIR", DEFAULT_WORK_DIR)),
        help="local scratch for the model and data ($KAIZEN_WORK_DIR, else %(default)s)",
    )
    parser.set_defaults(handler=run_eval_command, parser=parser)
    commands = parser.add_subparsers(dest="eval_command")
    score = commands.add_parser("score", help="score a JSON/JSONL file of {prediction, reference} records")
    score.add_argument("file", type=Path, help="JSON array or JSONL of {prediction, reference[, input]}")
    score.add_argument(
        "--metrics", help="comma-separated: bleu,fuzzy_match,rouge1,rouge2,rougeL,rougeLsum (all)"
    )
    score.add_argument(
        "--bleu-tokenize", default="unicode", help="unicode (default) or a sacrebleu tokenizer"
    )
    score.add_argument("--json", action="store_true", help="print JSON instead of a table")
    score.add_argument("--samples", action="store_true", help="also print each pair's scores")
    score.set_defaults(handler=run_score_command)


def load_config(path: Path, output_dir: str | None = None) -> Any:
    """Read and validate an EvalRunConfig (camelCase or snake_case keys)."""
    from kaizen_api.evalconfig import EvalRunConfig
    from kaizen_api.runconfig import RunLocation

    from kaizen_runner.configfile import read_config

    cfg = EvalRunConfig.model_validate(read_config(path))
    if output_dir:
        cfg = cfg.model_copy(update={"output": RunLocation(uri=output_dir)})
    return cfg


def _fail(err: Exception, cfg: Any) -> int:
    """Classify the failure as training does; report it in the termination message and to the endpoint."""
    from kaizen_api.results import EXIT_USER_ERROR, TerminationMessage

    from kaizen_runner.train.failures import classify, exit_code
    from kaizen_runner.train.progress import write_termination_message

    reason, message = classify(err)
    code = exit_code(reason)
    if code != EXIT_USER_ERROR:  # not the user's to fix: keep the traceback in the log
        logging.getLogger(__name__).error("evaluation failed (%s)", reason, exc_info=err)
    print(f"kaizen-runner eval: error: {message}", file=sys.stderr)
    run_name = getattr(cfg, "run_name", None)
    write_termination_message(
        TerminationMessage(run_name=run_name, phase="Failed", reason=reason, message=message[:4096])
    )
    return code


def final_message(results: Any, uri: str | None) -> Any:
    """The termination message: the compact results always fit (64 short entries); warnings are
    shortened, and left out when the message would pass Kubernetes' 4 KiB limit with them."""
    from kaizen_api.results import TerminationMessage

    from kaizen_runner.train.progress import TERMINATION_MESSAGE_MAX

    body = TerminationMessage(
        run_name=results.run_name, phase="Succeeded", results=results.compact(), results_uri=uri
    )
    with_warnings = body.model_copy(update={"warnings": [w[:200] for w in results.warnings[:8]] or None})
    size = len(with_warnings.model_dump_json(by_alias=True, exclude_none=True).encode())
    return with_warnings if size <= TERMINATION_MESSAGE_MAX else body


def run_eval_command(args: argparse.Namespace) -> int:
    from kaizen_runner.train.progress import write_termination_message

    if args.config is None:
        args.parser.error("--config is required (or use: kaizen-runner eval score FILE)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = None
    try:
        cfg = load_config(args.config, args.output_dir)
        from kaizen_runner.eval.run import run_eval

        results, uri = run_eval(cfg, work_dir=args.work_dir)
    except Exception as err:  # every failure ends with a reason, an exit code and a termination message
        return _fail(err, cfg)
    write_termination_message(final_message(results, uri))
    summary = {"runName": cfg.run_name, "results": results.compact(), "resultsUri": uri}
    print(json.dumps({**summary, "warnings": results.warnings}, ensure_ascii=False))
    return 0


def run_score_command(args: argparse.Namespace) -> int:
    from kaizen_api.runconfig import RunLocation

    from kaizen_runner.eval.errors import EvalError
    from kaizen_runner.eval.metrics import MetricError, score_pairs
    from kaizen_runner.eval.pairs import read_pairs

    try:
        pairs = read_pairs(RunLocation(uri=str(args.file)))
        scores = score_pairs(
            [p.prediction for p in pairs],
            [p.reference for p in pairs],
            args.metrics,
            bleu_tokenize=args.bleu_tokenize,
        )
    except (EvalError, MetricError) as err:
        print(f"kaizen-runner eval score: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        out: dict[str, Any] = {"pairs": len(pairs), "metrics": scores.aggregate, "settings": scores.settings}
        if args.samples:
            out["samples"] = [{"index": p.index, **s} for p, s in zip(pairs, scores.per_sample, strict=True)]
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return 0
    print(f"{len(pairs)} pairs")
    for metric, value in scores.aggregate.items():
        print(f"{metric:<12} {value:.4f}")
    if args.samples:
        names = list(scores.aggregate)
        print("index " + " ".join(f"{n:>11}" for n in names))
        for pair, row in zip(pairs, scores.per_sample, strict=True):
            print(f"{pair.index:>5} " + " ".join(f"{row[n]:>11.4f}" for n in names))
    print(f"bleu: {scores.settings.get('bleu', '-')}")
    return 0
