"""`kaizen-runner`: the one entrypoint of the runner image, also usable outside Kubernetes.

Each command group lives beside the code it drives and registers itself here. They are imported by
`main`, not at the top: a module the image cannot import is then the user error it is (exit 2, which
the Job's podFailurePolicy fails at once, with a termination message naming the module) rather than a
traceback's exit 1, which the Job retries in new pods of the same image, each failing the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

TERMINATION_LOG_DEFAULT = "/dev/termination-log"
# kaizen_api.results.EXIT_USER_ERROR, for when kaizen_api (or pydantic under it) is what cannot be
# imported; tests/train/test_cli.py holds the two equal.
EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    from kaizen_runner.data import cli as data_cli
    from kaizen_runner.eval import cli as eval_cli
    from kaizen_runner.model import cli as model_cli
    from kaizen_runner.plan import cli as plan_cli
    from kaizen_runner.train import cli as train_cli

    parser = argparse.ArgumentParser(prog="kaizen-runner", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (data_cli, plan_cli, train_cli, eval_cli, model_cli):
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ImportError as err:
        return _unimportable(err)
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


def _unimportable(err: ImportError) -> int:
    """Report a module the image cannot import as a user error: every retry would run the same image."""
    try:
        from kaizen_api.results import TerminationMessage

        from kaizen_runner.train.errors import missing_package
    except ImportError as core:  # pydantic or kaizen_api itself: no model to write the message with
        return _core_unimportable(core)
    failure = missing_package(err.name, f"{type(err).__name__}: {err}")
    print(f"kaizen-runner: error: {failure.message}", file=sys.stderr)
    body = TerminationMessage(phase="Failed", reason=failure.reason, message=failure.message[:2048])
    _write_termination_log(body.model_dump_json(by_alias=True, exclude_none=True))
    return EXIT_USER_ERROR


def _core_unimportable(err: ImportError) -> int:
    """`_unimportable` without the packages it reports with: the same exit code and message shape."""
    body, message = core_termination_message(err)
    print(f"kaizen-runner: error: {message}", file=sys.stderr)
    _write_termination_log(body)
    return EXIT_USER_ERROR


def core_termination_message(err: ImportError) -> tuple[str, str]:
    """The TerminationMessage JSON (written by hand: pydantic may be what is broken) and the message.
    ConfigInvalid, as `train.errors.missing_package` words it, so the Job is not retried."""
    what = f"the Python module {err.name}" if err.name else "a Python module"
    message = (
        f"the runner image cannot import {what} ({type(err).__name__}: {err}); a retry in the same "
        "image fails the same way: use a runner image that installs it"
    )
    body = {"phase": "Failed", "reason": "ConfigInvalid", "message": message[:2048]}
    return json.dumps(body, separators=(",", ":")), message


def _write_termination_log(body: str) -> None:
    target = Path(os.environ.get("KAIZEN_TERMINATION_LOG", TERMINATION_LOG_DEFAULT))
    with contextlib.suppress(OSError):  # not in a pod: stderr says it
        target.write_text(body, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
