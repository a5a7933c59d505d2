"""`kaizen-runner train --config run.json`: one training run, in this process or under torchrun.

With `--nproc-per-node N` (N > 1), or in a PyTorchJob / Indexed Job pod that asks for more than one
process (PET_NNODES, PET_NPROC_PER_NODE, or a pod-level WORLD_SIZE > 1), the command starts its
workers under torchrun (see `launch`) and ends with the first failed worker's exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from kaizen_runner.train.distributed import current_ranks, shut_down, under_launcher

DEFAULT_WORK_DIR = "/tmp/kaizen-work"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (pre-training, SFT or DPO) from a run configuration",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--config", required=True, type=Path, help="TrainRunConfig as JSON or YAML")
    parser.add_argument(
        "--output-dir",
        help="write checkpoints and the version under this folder or s3:// URI, not config.output",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(os.environ.get("KAIZEN_WORK_DIR", DEFAULT_WORK_DIR)),
        help="local scratch for base model, data and checkpoints ($KAIZEN_WORK_DIR, else %(default)s)",
    )
    parser.add_argument("--nproc-per-node", type=int, help="processes on this node (GPUs); starts torchrun")
    parser.add_argument(
        "--packing",
        action="store_true",
        help="SFT: pack several text examples into each sequence (pre-training always packs)",
    )
    parser.set_defaults(handler=run_train)


def load_config(path: Path, output_dir: str | None = None) -> Any:
    """Read and validate a TrainRunConfig (camelCase or snake_case keys); one from a newer operator is
    refused by its schemaVersion before its unknown fields are."""
    from kaizen_api.runconfig import (
        RunLocation,
        TrainRunConfig,
        UnsupportedSchemaVersion,
        check_schema_version,
    )

    from kaizen_runner.configfile import read_config
    from kaizen_runner.train.errors import RunnerError

    data = read_config(path)
    try:
        check_schema_version(data)
    except UnsupportedSchemaVersion as err:
        raise RunnerError(str(err)) from err
    cfg = TrainRunConfig.model_validate(data)
    if output_dir:
        cfg = cfg.model_copy(update={"output": RunLocation(uri=output_dir)})
    return cfg


def _train_argv(args: argparse.Namespace) -> list[str]:
    """The same command for each process torchrun starts (absolute paths: its cwd may differ)."""
    out = ["train", "--config", str(args.config.resolve()), "--work-dir", str(args.work_dir.resolve())]
    if args.output_dir:
        out += ["--output-dir", args.output_dir]
    if args.packing:
        out.append("--packing")
    return out


def run_train(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kaizen_runner.train.launch import launch, needs_launcher, node_rank

    try:
        if needs_launcher(os.environ, args.nproc_per_node):
            code, failure = launch(args.nproc_per_node, _train_argv(args))
            if failure is not None:
                print(f"kaizen-runner train: error: {failure.message}", file=sys.stderr)
                if node_rank(os.environ) == 0:  # one report per job, from the pod that hosts rank 0
                    _report_failure(_config_or_none(args), failure)
                else:
                    _report_failure(None, failure)
            return code
    except Exception as err:  # torchrun itself failed (rendezvous, bad environment)
        return _failed(err, None, in_worker=False)
    cfg = None
    try:
        cfg = load_config(args.config, args.output_dir)
        from kaizen_runner.train.run import run_training

        result = run_training(cfg, work_dir=args.work_dir, packing=args.packing)
    except Exception as err:  # every failure ends with a reason, an exit code and a termination message
        return _failed(err, cfg, in_worker=under_launcher(os.environ))
    shut_down()
    if result.summary is not None:
        print(result.summary.model_dump_json(by_alias=True, exclude_none=True))
    return 0


def _failed(err: Exception, cfg: Any, *, in_worker: bool) -> int:
    """Log, classify and report a failure; a torchrun worker leaves the report to its launcher."""
    from kaizen_api.results import EXIT_USER_ERROR, TerminationMessage

    from kaizen_runner.train.failures import classify, exit_code
    from kaizen_runner.train.launch import FAILURE_DIR_ENV, write_worker_failure

    reason, message = classify(err)
    code = exit_code(reason)
    if code != EXIT_USER_ERROR:  # not the user's to fix: keep the traceback in the log
        logging.getLogger(__name__).error("training failed (%s)", reason, exc_info=err)
    print(f"kaizen-runner train: error: {message}", file=sys.stderr)
    failure = TerminationMessage(
        run_name=getattr(cfg, "run_name", None), phase="Failed", reason=reason, message=message[:4096]
    )
    if in_worker and os.environ.get(FAILURE_DIR_ENV):
        write_worker_failure(failure, current_ranks().rank)
    elif current_ranks().is_main:  # alone, or under a torchrun started by hand
        _report_failure(cfg, failure)
    return code


def _config_or_none(args: argparse.Namespace) -> Any:
    try:
        return load_config(args.config, args.output_dir)
    except Exception:  # the failure being reported may be this very config
        return None


def _report_failure(cfg: Any, failure: Any) -> None:
    """The failure in the pod's termination message and, when the run has one, at its progress endpoint."""
    from kaizen_runner.train.progress import send_failure, write_termination_message

    if cfg is not None and failure.run_name is None:
        failure = failure.model_copy(update={"run_name": cfg.run_name})
    write_termination_message(failure)
    if cfg is not None and cfg.progress is not None:
        send_failure(cfg.run_name, cfg.progress, failure.reason, failure.message or "")
