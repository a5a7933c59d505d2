"""`kaizen-runner`: the one entrypoint of the runner image, also usable outside Kubernetes.

Each command group lives beside the code it drives and registers itself here.
"""

from __future__ import annotations

import argparse
import sys

from kaizen_runner.data import cli as data_cli
from kaizen_runner.eval import cli as eval_cli
from kaizen_runner.model import cli as model_cli
from kaizen_runner.plan import cli as plan_cli
from kaizen_runner.train import cli as train_cli

COMMAND_GROUPS = (data_cli, plan_cli, train_cli, eval_cli, model_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kaizen-runner", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
