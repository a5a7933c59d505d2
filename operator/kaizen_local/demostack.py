"""What the demo and the end-to-end tests run Kaizen on: a local cluster (with the real node where it
can start), the runner image inside it, an S3 server pods reach, the tiny model as the mirror of the
demo catalog entry (``examples/demo/catalog-tiny.yaml``), a ``../shared/datasets`` file, and the
operator as a subprocess configured through ``KAIZEN_*`` settings.

Every stage is timed and printed; the heavy ones are cached (etcd snapshot, runner image, containerd's
images, the tiny model), so a second start reuses them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

from kaizen_local.cluster import DEFAULT_SA_PATH, wait_for
from kaizen_local.controlplane import LocalControlPlane
from kaizen_local.node.network import HOST_ADDRESS
from kaizen_local.node.realnode import NAMESPACE_ANNOTATIONS
from kaizen_local.paths import CACHE_DIR, REPO_ROOT, SHARED_DIR
from kaizen_local.processes import free_port
from kaizen_local.s3server import S3Server, run_s3_server

T = TypeVar("T")

CATALOG_FILE = REPO_ROOT / "examples" / "demo" / "catalog-tiny.yaml"
TINY_MODEL = "kaizen-tiny-llama"  # the catalog entry's name
CATALOG_BUCKET, DATA_BUCKET, MODELS_BUCKET = "kaizen-catalog", "kaizen-data", "kaizen-models"
SAMPLES = SHARED_DIR / "datasets" / "ai-studio-samples"
DATASETS = {  # key in DATA_BUCKET -> the shared file uploaded there
    "samples/alpaca_train_mini.json": SAMPLES / "alpaca" / "alpaca_train_mini.json",
    "samples/alpaca_test_mini.json": SAMPLES / "alpaca" / "alpaca_test_mini.json",
}
MODEL_CACHE = CACHE_DIR / "demo" / f"{TINY_MODEL}-v1"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


class Stages:
    """Prints each setup stage: what it does, then how long it took."""

    def __init__(self, log: Callable[[str], None] = print) -> None:
        self.log = log
        self.seconds: dict[str, float] = {}

    def run(self, what: str, step: Callable[[], T]) -> T:
        self.log(f"==> {what} ...")
        started = time.monotonic()
        result = step()
        self.seconds[what] = round(time.monotonic() - started, 1)
        self.log(f"    {what}: {self.seconds[what]}s")
        return result


def tiny_model(target: Path = MODEL_CACHE) -> Path:
    """The tiny Llama, built once (random weights with a fixed seed) and kept in the cache."""
    from kaizen_local.tinymodels import build_tiny_causal_lm

    if not (target / "config.json").is_file():
        partial = target.with_name(target.name + ".partial")
        build_tiny_causal_lm(partial, arch="llama")
        partial.rename(target)
    return target


def upload_folder(s3: S3Server, folder: Path, bucket: str, prefix: str) -> int:
    client = s3.client()
    count = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, prefix + str(path.relative_to(folder)))
        count += 1
    return count


def seed_storage(s3: S3Server, model: Path) -> None:
    """Buckets, the tiny model as the catalog entry's mirror, and the datasets."""
    client = s3.client()
    for bucket in (CATALOG_BUCKET, DATA_BUCKET, MODELS_BUCKET):
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
    upload_folder(s3, model, CATALOG_BUCKET, f"{TINY_MODEL}/")
    for key, path in DATASETS.items():
        client.upload_file(str(path), DATA_BUCKET, key)


def operator_env(cluster: LocalControlPlane, runner_image: str, host: str) -> dict[str, str]:
    """The operator's settings: pods reach its progress endpoint at ``host`` and never pull images."""
    progress = free_port()
    return {
        **cluster.env,
        "PYTHONUNBUFFERED": "1",
        "KAIZEN_RUNNER_IMAGE": runner_image,
        "KAIZEN_IMAGE_PULL_POLICY": "Never",
        "KAIZEN_PROGRESS_PORT": str(progress),
        "KAIZEN_PROGRESS_URL": f"http://{host}:{progress}",
        "KAIZEN_PROGRESS_INTERVAL_SECONDS": "1",  # a tiny model's run lasts seconds: watch every step
        "KAIZEN_METRICS_PORT": str(free_port()),
        "KAIZEN_PROGRESS_KEY": base64.b64encode(os.urandom(24)).decode(),
        "KAIZEN_CATALOG_PATH": str(CATALOG_FILE),
        "KAIZEN_HF_HUB_OFFLINE": "true",
        "KAIZEN_BACKOFF_LIMIT": "2",
    }


class DemoStack:
    """The cluster's companions for one session; ``close`` stops what ``start`` started."""

    def __init__(self, cluster: LocalControlPlane, work_dir: Path, stages: Stages | None = None) -> None:
        self.cluster = cluster
        self.work_dir = work_dir
        self.stages = stages or Stages()
        self.real_node = cluster.node is not None
        self.host = HOST_ADDRESS if self.real_node else "127.0.0.1"
        self.runner_image = ""
        self.s3: S3Server | None = None
        self.operator: subprocess.Popen[bytes] | None = None
        self.operator_log = work_dir / "operator.log"
        self._exit = ExitStack()

    def start(self, runner_image: Callable[[], str] | None = None) -> DemoStack:
        """``runner_image`` gives the image's reference once it is in the node's containerd."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            if runner_image is not None:
                self.runner_image = self.stages.run("runner image into the node's containerd", runner_image)
            (self.work_dir / "s3").mkdir(exist_ok=True)
            self.s3 = self._exit.enter_context(
                run_s3_server(self.work_dir / "s3", self.work_dir / "rclone.log", host=self.host)
            )
            cached = "cached" if (MODEL_CACHE / "config.json").is_file() else "building"
            model = self.stages.run(f"tiny model {TINY_MODEL} ({cached}, {MODEL_CACHE})", tiny_model)
            self.stages.run(
                f"S3 at {self.s3.endpoint_url}: mirror of {TINY_MODEL}, datasets",
                lambda: seed_storage(self.s3, model),  # type: ignore[arg-type]
            )
            self.stages.run("operator (subprocess)", self._start_operator)
        except BaseException:
            self.close()
            raise
        return self

    def _start_operator(self) -> None:
        env = operator_env(self.cluster, self.runner_image or "kaizen.local/runner:none", self.host)
        log = self.operator_log.open("ab")
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "kaizen_operator.main"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self._exit.callback(self._stop_operator)
        log.close()

    def _stop_operator(self) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.terminate()
            try:
                self.operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()

    def check_operator(self) -> None:
        if self.operator is not None and self.operator.poll() is not None:
            tail = "\n".join(self.operator_log.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"the operator exited with {self.operator.returncode}:\n{tail}")

    def namespace(self, name: str) -> str:
        """A namespace under the restricted Pod Security profile, whose pods run on the real node (when
        there is one), with the ``datahub`` connection Secret."""
        metadata: dict[str, Any] = {"name": name, "labels": {**RESTRICTED, "kaizen.dev/demo": "true"}}
        if self.real_node:
            metadata["annotations"] = NAMESPACE_ANNOTATIONS
        self.cluster.request("POST", "/api/v1/namespaces", {"metadata": metadata})
        wait_for(
            lambda: self.cluster.exists(DEFAULT_SA_PATH.format(name)), what=f"ServiceAccount {name}/default"
        )
        assert self.s3 is not None
        self.cluster.request("POST", f"/api/v1/namespaces/{name}/secrets", self.s3.secret("datahub"))
        return name

    def close(self) -> None:
        self._exit.close()
