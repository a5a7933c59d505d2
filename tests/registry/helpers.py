"""Helpers of the registry tests: version folders as the runner and users leave them."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaizen_api.base import GROUP, VERSION
from kaizen_api.results import ManifestFile, VersionManifest
from kaizen_runner.train.output import sha256_file

if TYPE_CHECKING:  # the unit tests that import these helpers need no Kubernetes client
    from kaizen_operator.kube import Kube


def publish_like_the_runner(
    model: Path,
    version: Path,
    adapter: bool = False,
    base_uri: str = "s3://models/base",
    base_name: str = "Llama",
) -> Path:
    """A version folder as kaizen_runner.train.output.publish_version leaves it: files, then the manifest."""
    kind = "adapter" if adapter else "model"
    shutil.copytree(model, version / kind)
    if adapter:
        for name in ("config.json", "model.safetensors"):
            (version / kind / name).unlink()
        (version / kind / "adapter_config.json").write_text(
            json.dumps({"peft_type": "LORA", "base_model_name_or_path": base_uri})
        )
        (version / kind / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (version / "training_report.json").write_text("{}")
    files = [
        ManifestFile(path=p.relative_to(version).as_posix(), size=p.stat().st_size, sha256=sha256_file(p))
        for p in sorted(version.rglob("*"))
        if p.is_file()
    ]
    manifest = VersionManifest(
        version=version.name, artifacts={kind: kind}, files=files, base_model=base_name
    )
    (version / "manifest.json").write_text(manifest.model_dump_json(by_alias=True, exclude_none=True))
    return version


def upload(client, folder: Path, bucket: str, prefix: str, skip: frozenset[str] = frozenset()) -> None:
    """Put every file of `folder` under `prefix/` (as `aws s3 cp --recursive` would)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel not in skip:
            client.upload_file(str(path), bucket, f"{prefix}/{rel}")


def keys(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


PM = f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/privatemodels"


def model(name: str, bucket: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "PrivateModel",
        "metadata": {"name": name},
        "spec": {
            "title": name,
            "storage": {
                "s3": {"connection": {"name": "datahub"}, "bucket": bucket, "key": f"models/{name}/"}
            },
            **spec,
        },
    }


def wait(get: Callable[[], Any], check: Callable[[Any], bool], what: str, timeout: float = 40) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = get()
        if check(value):
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {value}")


def getter(kube: Kube, namespace: str, name: str) -> Callable[[], dict | None]:
    return lambda: kube.get(f"{PM.format(ns=namespace)}/{name}")


def versions_of(obj: dict | None) -> dict[str, dict]:
    return {v["name"]: v for v in ((obj or {}).get("status") or {}).get("versions") or []}


def condition(obj: dict, type_: str) -> dict:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def evaljob(name: str, bucket: str, model_name: str) -> dict[str, Any]:
    """A standard-suite EvalJob of `model_name`/v1 whose pod kwok keeps running for 10 minutes."""
    fake = {"workload": {"annotations": {"kaizen.dev/fake-duration": "10m"}}}
    s3 = {"connection": {"name": "datahub"}, "bucket": bucket}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EvalJob",
        "metadata": {"name": name, "annotations": {"kaizen.dev/fake-pods": json.dumps(fake)}},
        "spec": {
            "displayName": "testj_busy",
            "model": {"privateModel": {"name": model_name, "version": "v1"}},
            "suite": "standard",
            "dataset": {"format": "alpaca", "s3": {**s3, "key": "data/alpaca_test_mini.json"}},
            "resources": {"gpusPerNode": 0},
            "output": {"s3": {**s3, "key": "eval-results"}},
        },
    }
