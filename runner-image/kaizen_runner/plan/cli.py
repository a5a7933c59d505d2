"""`kaizen-runner plan --config run.json`: the CPU preflight of a run, before any GPU is held.

Validates the real dataset (and the validation set), counts tokens with the base model's tokenizer
(only its tokenizer files are fetched), and plans steps per epoch, total steps for the run's world
size (`--nodes` x `--gpus-per-node`) and the GPU memory per device. The plan is printed as JSON
and written to the termination log as a `TerminationMessage`, where the operator reads it.

Exit status: 0 with a plan; EXIT_USER_ERROR (2) when the data, configuration or model cannot be
used (reason DataInvalid with the record indexes, ConfigInvalid or ModelInvalid); EXIT_INFRA_ERROR
(3) when storage could not be reached (a retry may succeed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from kaizen_api.results import FailureReason, PreflightPlan, TerminationMessage

TERMINATION_LOG_MAX = 4096


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="preflight a training run on CPU: validate data, count tokens, plan steps and GPU memory",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--config", required=True, type=Path, help="TrainRunConfig as JSON or YAML")
    parser.add_argument("--nodes", type=_positive, default=1, help="nodes of the run (default 1)")
    parser.add_argument("--gpus-per-node", type=int, default=1, help="GPUs per node (default 1)")
    parser.add_argument("--parameters", type=_positive, help="parameters of the base model (else counted)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(os.environ.get("KAIZEN_WORK_DIR", "/tmp/kaizen-work")),
        help="scratch for the tokenizer files ($KAIZEN_WORK_DIR, else %(default)s)",
    )
    parser.set_defaults(handler=run_plan)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def fitted(message: TerminationMessage, limit: int = TERMINATION_LOG_MAX) -> str:
    """The message as JSON within Kubernetes' limit: record problems dropped from the end, then the
    error cut, so what arrives is always valid JSON."""

    def dump(m: TerminationMessage) -> str:
        return m.model_dump_json(by_alias=True, exclude_none=True)

    while len(dump(message).encode()) > limit and message.plan and message.plan.first_problems:
        plan = message.plan.model_copy(update={"first_problems": message.plan.first_problems[:-1] or None})
        message = message.model_copy(update={"plan": plan})
    text = dump(message)
    if len(text.encode()) > limit and message.message:
        keep = max(0, len(message.message) - (len(text.encode()) - limit) - 8)
        text = dump(message.model_copy(update={"message": message.message[:keep] + "…"}))
    return text


def _finish(message: TerminationMessage) -> None:
    from kaizen_runner.cli import TERMINATION_LOG_DEFAULT

    target = Path(os.environ.get("KAIZEN_TERMINATION_LOG", TERMINATION_LOG_DEFAULT))
    try:
        target.write_text(fitted(message), encoding="utf-8")
    except OSError as err:
        logging.getLogger(__name__).info("no termination message written to %s: %s", target, err)


def _failed(
    run_name: str | None, reason: FailureReason, message: str, plan: PreflightPlan | None, code: int
) -> int:
    print(f"kaizen-runner plan: error: {message}", file=sys.stderr)
    if plan is not None:
        print(plan.model_dump_json(by_alias=True, exclude_none=True, indent=2))
    _finish(
        TerminationMessage(
            run_name=run_name,
            phase="Failed",
            reason=reason,
            message=message[:4096],
            plan=plan,
        )
    )
    return code


def run_plan(args: argparse.Namespace) -> int:
    from kaizen_runner.plan.run import PlanFailed, plan_run
    from kaizen_runner.train.cli import load_config
    from kaizen_runner.train.failures import classify, exit_code

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_name = None
    try:
        cfg = load_config(args.config)
        run_name = cfg.run_name
        plan = plan_run(
            cfg,
            nodes=args.nodes,
            gpus_per_node=args.gpus_per_node,
            parameters=args.parameters,
            work_dir=args.work_dir,
        )
    except PlanFailed as err:
        return _failed(run_name, err.reason, err.message, err.plan, exit_code(err.reason))
    except Exception as err:  # every failure ends with a reason, an exit code and a termination message
        reason, text = classify(err)
        return _failed(run_name, reason, text, None, exit_code(reason))
    print(json.dumps(plan.model_dump(by_alias=True, exclude_none=True, mode="json"), indent=2))
    _finish(TerminationMessage(run_name=run_name, phase="Succeeded", plan=plan))
    return 0
