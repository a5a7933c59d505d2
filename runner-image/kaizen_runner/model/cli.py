"""`kaizen-runner model check|upload|download`: the registry from a workstation.

`check` prints the readiness verdict, missing files and derived tags that the operator records for a
version (the same code computes both); `upload` sends a folder as a new version of a PrivateModel
(resumable, manifest last); `download` fetches a ready version and verifies it against its manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kaizen_api.results import EXIT_USER_ERROR

EXIT_NOT_READY = 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "model", help="check, upload or download a model version", description=__doc__
    )
    commands = parser.add_subparsers(dest="model_command", required=True)

    check = commands.add_parser("check", help="is a folder (or s3:// prefix) a ready model version?")
    check.add_argument("location", help="a local folder or s3://bucket/prefix of one version")
    check.add_argument("--json", action="store_true", help="print the verdict as JSON")
    check.add_argument("--verify-checksums", action="store_true", help="compare sha256 with the manifest")
    check.set_defaults(handler=run_check)

    for name, helps in (
        ("upload", "upload a folder as a new version"),
        ("download", "download a ready version"),
    ):
        sub = commands.add_parser(name, help=helps)
        if name == "upload":
            sub.add_argument("folder", type=Path, help="the version's files (config, weights, tokenizer)")
            sub.add_argument(
                "--to", required=True, help="pm/NAME (through the kubeconfig) or s3://bucket/prefix"
            )
            sub.add_argument("--version", help="version name (default: the folder's name)")
            sub.add_argument("--base-model", help="base model recorded in the manifest")
            sub.add_argument("--force", action="store_true", help="upload even if the folder is not ready")
        else:
            sub.add_argument(
                "source", help="pm/NAME (through the kubeconfig) or s3://bucket/prefix of a version"
            )
            sub.add_argument("folder", type=Path, help="where to put the files")
            sub.add_argument("--version", help="version name (pm/NAME only; default: the newest ready one)")
        sub.add_argument("--namespace", "-n", help="namespace of the PrivateModel (default: the context's)")
        sub.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
        sub.add_argument("--context", help="kubeconfig context")
        sub.add_argument("--part-size-mib", type=int, default=64, help="multipart part size (default: 64)")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        sub.set_defaults(handler=run_upload if name == "upload" else run_download)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def _print_verdict(verdict: Any, where: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"location": where, **verdict.to_json()}, indent=2))
        return
    print(f"{where}: ready" if verdict.ready else f"{where}: not ready ({verdict.status})")
    for missing in verdict.missing:
        print(f"  missing: {missing}")
    for problem in verdict.problems:
        print(f"  problem: {problem}")
    if verdict.tags is not None:
        tags = verdict.tags.to_manifest()
        print("  tags: " + ", ".join(f"{k}={v}" for k, v in tags.items()))


def run_check(args: argparse.Namespace) -> int:
    from kaizen_operator.registry.scan import check_version
    from kaizen_operator.registry.storage import LocalModelStorage, ModelStorage, S3ModelStorage

    from kaizen_runner.storage import ObjectStore, S3Connection, StorageError, parse_s3_url

    try:
        storage: ModelStorage
        if args.location.startswith("s3://"):
            bucket, prefix = parse_s3_url(args.location)
            storage = S3ModelStorage(ObjectStore(S3Connection.from_env()), bucket, prefix)
        else:
            folder = Path(args.location)
            if not folder.is_dir():
                return _fail(f"{folder} is not a folder")
            storage = LocalModelStorage(folder)
        verdict = check_version(storage, verify=args.verify_checksums)
    except StorageError as err:
        return _fail(str(err))
    _print_verdict(verdict, args.location, args.json)
    return 0 if verdict.ready else EXIT_NOT_READY


def _progress_bar(total: int, label: str, disabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=disabled)


def _not_a_version_name(version: str) -> str | None:
    """Why the registry would never list a folder of this name as a version (None when it would)."""
    from kaizen_api.base import NAME_MAX
    from kaizen_operator.registry.versions import is_version_folder

    if "/" in version or not is_version_folder(version):
        return "is not a version folder the registry lists (no '/', not checkpoints, no leading '.' or '_')"
    if len(version) > NAME_MAX:
        return f"is longer than {NAME_MAX} characters"
    return None


def run_upload(args: argparse.Namespace) -> int:
    from kaizen_operator.registry.scan import check_version
    from kaizen_operator.registry.storage import LocalModelStorage

    from kaizen_runner.model.target import resolve
    from kaizen_runner.model.transfer import build_manifest, upload_version
    from kaizen_runner.storage import StorageError

    folder: Path = args.folder
    if not folder.is_dir():
        return _fail(f"{folder} is not a folder")
    version = args.version or folder.resolve().name
    if problem := _not_a_version_name(version):
        return _fail(f"version {version!r} {problem}; choose another with --version")
    verdict = check_version(LocalModelStorage(folder))
    if not verdict.ready and not args.force:
        _print_verdict(verdict, str(folder), False)
        return _fail("the folder is not a ready model version (use --force to upload it anyway)")
    try:
        target = resolve(args.to, namespace=args.namespace, kubeconfig=args.kubeconfig, context=args.context)
        manifest = build_manifest(folder, version, args.base_model)
        total = sum(f.size for f in manifest.files)
        prefix = target.version_prefix(version)
        with _progress_bar(total, f"upload {version}", args.no_progress) as bar:
            sent = upload_version(
                target.objects,
                folder,
                target.bucket,
                prefix,
                manifest,
                part_size=args.part_size_mib << 20,
                progress=bar.update,
            )
    except StorageError as err:
        return _fail(str(err))
    print(f"uploaded {version} to s3://{target.bucket}/{prefix} ({sent} bytes sent, {total} in all)")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from kaizen_operator.registry.usable import ModelNotReady, ready_version

    from kaizen_runner.model.target import resolve
    from kaizen_runner.model.transfer import download_version
    from kaizen_runner.storage import StorageError
    from kaizen_runner.train.output import MANIFEST, verify_local_version

    try:
        target = resolve(
            args.source, namespace=args.namespace, kubeconfig=args.kubeconfig, context=args.context
        )
        if target.status is not None:
            prefix = target.version_prefix(ready_version(target.status, args.version).name)
        elif args.version:
            return _fail("--version applies to pm/NAME; give the version's own s3:// prefix instead")
        else:
            prefix = target.prefix
        total = sum(info.size for info in target.objects.list(target.bucket, prefix.rstrip("/") + "/"))
        with _progress_bar(total, "download", args.no_progress) as bar:
            files = download_version(target.objects, target.bucket, prefix, args.folder, progress=bar.update)
    except (StorageError, ModelNotReady) as err:
        return _fail(str(err))
    if not files:
        return _fail(f"nothing stored at s3://{target.bucket}/{prefix}")
    problems = verify_local_version(args.folder) if (args.folder / MANIFEST).is_file() else []
    for problem in problems:
        print(f"  problem: {problem}", file=sys.stderr)
    print(f"downloaded {len(files)} file(s) into {args.folder}")
    return EXIT_USER_ERROR if problems else 0
