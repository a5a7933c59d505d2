"""Fixtures of the registry tests: tiny model folders as Hugging Face saves them, an S3 server that
keeps bucket policies (moto's; the rclone server of tests/support/s3server.py ignores them), and the
operator in-process with a client of the test control plane."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from support.tinymodels import build_tiny_causal_lm, build_tiny_llava

if TYPE_CHECKING:  # kopf and kubernetes take seconds to import: only the cluster tests load them
    from kaizen_operator.kube import Kube
    from kopf.testing import KopfRunner


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny Llama, Qwen2 and LLaVA folders (config, safetensors, tokenizer, chat template)."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "llama": build_tiny_causal_lm(root / "llama", "llama"),
        "qwen2": build_tiny_causal_lm(root / "qwen2", "qwen2"),
        "llava": build_tiny_llava(root / "llava"),
    }


@pytest.fixture
def model_copy(tiny_models: dict[str, Path], tmp_path: Path):
    """A fresh copy of one tiny model folder, to damage freely."""

    def copy(name: str = "llama") -> Path:
        target = tmp_path / name
        shutil.copytree(tiny_models[name], target)
        return target

    return copy


@pytest.fixture(scope="session")
def policy_s3() -> Iterator[str]:
    """The endpoint of an in-process moto S3 server (it stores bucket policies but enforces none)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def operator(control_plane) -> Iterator[KopfRunner]:
    """The whole operator in-process, with the other controllers' test settings (kwok's fake pods)."""
    from cluster.ftp_support import in_process_operator

    with in_process_operator(control_plane) as runner:
        yield runner


@pytest.fixture
def kube(control_plane) -> Iterator[Kube]:
    from kaizen_operator.kube import Kube
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    yield Kube(api)
    api.close()


@pytest.fixture
def secret(kube: Kube, namespace: str, s3_server) -> str:
    kube.request("POST", f"/api/v1/namespaces/{namespace}/secrets", s3_server.secret("datahub"))
    return "datahub"
