"""Fixtures of the evaluation tests: tiny local models (nothing downloaded), run configurations."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TOKENIZERS_PARALLELISM="false",
    OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
    TRANSFORMERS_VERBOSITY="error",
)

from support.tinymodels import SAMPLES, build_tiny_causal_lm  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "tiny-qwen2", "qwen2")


def model_entry(path: Path, **facts: Any) -> dict[str, Any]:
    """The run configuration's model block, as the operator writes it for an instruction-tuned LLM."""
    base = {
        "name": "tiny-qwen2",
        "location": {"uri": str(path)},
        "modality": "text",
        "parameters": 30000,
        "instructionTuned": True,
    }
    return {**base, **facts}


def write_config(path: Path, body: dict[str, Any]) -> Path:
    path.write_text(json.dumps(body))
    return path


@pytest.fixture(scope="session")
def alpaca_test_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six short records of the shared Alpaca test sample, plus one unusable record."""
    records = json.loads((SAMPLES / "alpaca" / "alpaca_test_mini.json").read_text(encoding="utf-8"))
    records.sort(key=lambda r: len(json.dumps(r)))
    rows = records[:6] + [{"instruction": "", "output": ""}]
    path = tmp_path_factory.mktemp("data") / "alpaca_test.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def unreachable_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A mounted connection whose endpoint refuses connections (one attempt, so the test is quick)."""
    folder = tmp_path / "connections" / "hub"
    folder.mkdir(parents=True)
    values = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "a",
        "AWS_SECRET_ACCESS_KEY": "k",
    }
    for key, value in values.items():
        (folder / key).write_text(value)
    monkeypatch.setenv("KAIZEN_CONNECTIONS_DIR", str(folder.parent))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("KAIZEN_TERMINATION_LOG", str(tmp_path / "term"))
    return "hub"
