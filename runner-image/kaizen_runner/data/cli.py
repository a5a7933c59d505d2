"""`kaizen-runner data validate`: the pipeline's data preflight, also runnable by hand.

Exit status: 0 when usable data is left (and, with --strict, nothing was skipped), 1 when the
data is unusable, 2 for a usage error. The report goes to stdout (text, or JSON with --json);
an error without a report goes to stderr as one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from kaizen_runner.data.formats import DataFormat, parse_format
from kaizen_runner.data.issues import DataError
from kaizen_runner.data.loader import load_records
from kaizen_runner.storage import S3Connection, StorageError


def register(subparsers: Any) -> None:
    data = subparsers.add_parser("data", help="check and convert datasets")
    commands = data.add_subparsers(dest="data_command", required=True)
    validate = commands.add_parser(
        "validate",
        help="validate a dataset and print its report",
        description="Validate SOURCE (a path, s3://bucket/key or an http(s) URL) as FORMAT.",
    )
    formats = ", ".join(f.value for f in DataFormat)
    validate.add_argument("--format", required=True, help=f"one of {formats} (any case)")
    validate.add_argument("source", metavar="SOURCE")
    validate.add_argument("--strict", action="store_true", help="fail if any record is unusable")
    validate.add_argument("--json", action="store_true", help="print the machine-readable report")
    validate.add_argument("--max-length", type=_positive, help="skip records with more characters of text")
    validate.add_argument(
        "--secret-file",
        type=Path,
        help="Kubernetes Secret (YAML) with the S3 connection; default: AWS_* environment variables",
    )
    validate.set_defaults(handler=run_validate)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run_validate(args: argparse.Namespace) -> int:
    try:
        fmt = parse_format(args.format)
        connection = _connection(args.secret_file) if args.secret_file else None
        result = load_records(
            args.source, fmt, strict=args.strict, max_length=args.max_length, connection=connection
        )
    except DataError as exc:
        return _failed(args, exc.reason.value, exc.message, exc.report)
    except StorageError as exc:
        return _failed(args, "bad_connection", str(exc), None)
    with result:
        report = result.report
        print(json.dumps({**report.as_dict(), "ok": True}, indent=2) if args.json else report.to_text())
    return 0


def _connection(path: Path) -> S3Connection:
    try:
        secret = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StorageError(f"cannot read the Secret file {path}: {exc}", cause="bad_config") from None
    except UnicodeDecodeError:
        raise StorageError(f"the Secret file {path} is not UTF-8 text", cause="bad_config") from None
    except yaml.YAMLError as exc:
        raise StorageError(f"the Secret file {path} {_yaml_position(exc)}", cause="bad_config") from None
    if not isinstance(secret, dict):
        raise StorageError(f"{path} is not a Kubernetes Secret", cause="bad_config")
    return S3Connection.from_secret(secret)


def _yaml_position(exc: yaml.YAMLError) -> str:
    """Where the YAML breaks, never what is there: PyYAML's own message quotes the line, and a Secret's
    lines are credentials."""
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return "is not valid YAML"
    return f"is not valid YAML at line {mark.line + 1}, column {mark.column + 1}"


def _failed(args: argparse.Namespace, reason: str, message: str, report: Any) -> int:
    if args.json:
        body = report.as_dict() if report is not None else {"source": args.source, "format": args.format}
        print(json.dumps({**body, "ok": False, "error": {"reason": reason, "message": message}}, indent=2))
    else:
        if report is not None:
            print(report.to_text())
        print(f"error: {message}", file=sys.stderr)
    return 1
