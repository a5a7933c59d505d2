"""`kaizen-runner train --config run.json`: one training run, in this process or under torchrun.

With `--nproc-per-node N` (N > 1), or in a PyTorchJob pod (PET_NNODES / PET_NPROC_PER_NODE, or a
pod-level WORLD_SIZE > 1), the command re-executes itself under torchrun with that topology.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from kaizen_runner.train.distributed import (
    current_ranks,
    launcher_command,
    launcher_env,
    topology_from_env,
    under_launcher,
)

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

    from kaizen_runner.train.errors import RunnerError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RunnerError(f"cannot read the run configuration {path}: {err.strerror}") from err
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as err:  # yaml.YAMLError is not one, but json's and a scanner's are
        raise RunnerError(f"the run configuration {path} is not valid JSON/YAML: {err}") from err
    if not isinstance(data, dict):
        raise RunnerError(f"the run configuration {path} is not an object")
    try:
        check_schema_version(data)
    except UnsupportedSchemaVersion as err:
        raise RunnerError(str(err)) from err
    cfg = TrainRunConfig.model_validate(data)
    if output_dir:
        cfg = cfg.model_copy(update={"output": RunLocation(uri=output_dir)})
    return cfg


def _relaunch_under_torchrun(args: argparse.Namespace) -> None:
    """Replace this process with torchrun when the topology asks for more than one process."""
    if under_launcher(os.environ):
        return
    topology = topology_from_env(os.environ, args.nproc_per_node)
    if not topology.multi_process:
        return
    command = launcher_command(topology, _train_argv(args))
    logging.getLogger(__name__).info("starting %s", " ".join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, launcher_env(os.environ))


def _train_argv(args: argparse.Namespace) -> list[str]:
    """The same command for each process torchrun starts (absolute paths: its cwd may differ)."""
    out = ["train", "--config", str(args.config.resolve()), "--work-dir", str(args.work_dir.resolve())]
    if args.output_dir:
        out += ["--output-dir", args.output_dir]
    if args.packing:
        out.append("--packing")
    return out


def run_train(args: argparse.Namespace) -> int:
    from kaizen_api.results import EXIT_USER_ERROR

    from kaizen_runner.train.failures import classify, exit_code

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _relaunch_under_torchrun(args)
    ranks = current_ranks()
    cfg = None
    try:
        cfg = load_config(args.config, args.output_dir)
        from kaizen_runner.train.run import run_training

        result = run_training(cfg, work_dir=args.work_dir, packing=args.packing)
    except Exception as err:  # every failure ends with a reason, an exit code and a termination message
        reason, message = classify(err)
        if exit_code(reason) != EXIT_USER_ERROR:  # not the user's to fix: keep the traceback in the log
            logging.getLogger(__name__).exception("training failed (%s)", reason)
        print(f"kaizen-runner train: error: {message}", file=sys.stderr)
        if ranks.is_main:
            report_failure(cfg, reason, message)
        return exit_code(reason)
    if result.summary is not None:
        print(result.summary.model_dump_json(by_alias=True, exclude_none=True))
    return 0


def report_failure(cfg: Any, reason: Any, message: str) -> None:
    """The failure in the pod's termination message and, when the run has one, at its progress endpoint."""
    from kaizen_api.results import TerminationMessage

    from kaizen_runner.train.progress import send_failure, write_termination_message

    run_name = getattr(cfg, "run_name", None)
    write_termination_message(
        TerminationMessage(run_name=run_name, phase="Failed", reason=reason, message=message[:4096])
    )
    if cfg is not None and cfg.progress is not None:
        send_failure(cfg.run_name, cfg.progress, reason, message)
