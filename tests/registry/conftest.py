"""Fixtures of the registry tests: tiny model folders as Hugging Face saves them, and an S3 server that
keeps bucket policies (moto's; the rclone server of tests/support/s3server.py ignores them)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.tinymodels import build_tiny_causal_lm, build_tiny_llava


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
