"""Fixtures of the training tests: tiny local models, small data sets, run configurations, runner processes.

Nothing is downloaded: models are built by tests/support/tinymodels.py, data are the shortest
records of the shared sample datasets (written to a temporary folder, never into the project).
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TOKENIZERS_PARALLELISM="false",
    OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
    TRANSFORMERS_VERBOSITY="error",
    DISABLE_MLFLOW_INTEGRATION="TRUE",
)

from support.tinymodels import SAMPLES, build_tiny_causal_lm, build_tiny_llava  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "tiny-llama", "llama")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_causal_lm(tmp_path_factory.mktemp("models") / "tiny-qwen2", "qwen2")


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny-llava")


def _shortest(path: Path, count: int, skip: int = 0) -> list[dict[str, Any]]:
    """The `count` shortest records after the `skip` shortest (real records, short enough for tiny runs)."""
    records = json.loads(path.read_text(encoding="utf-8"))
    records.sort(key=lambda r: len(json.dumps(r)))
    return records[skip : skip + count]


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small train and validation files per format, cut from the shared samples."""
    out = tmp_path_factory.mktemp("data")
    plan = {
        "alpaca": ("alpaca/alpaca_train_mini.json", 8),
        "sharegpt": ("sharegpt/sharegpt_chat_train_mini.json", 8),
        "dpo": ("sharegpt-dpo/dpo_agrilla_en_train_sharegpt_mini.json", 8),
        "corpus": ("corpus/corpus_wiki_en_train_mini.json", 16),
    }
    for name, (source, count) in plan.items():
        rows = _shortest(SAMPLES / source, count + 4)
        (out / f"{name}_train.json").write_text(json.dumps(rows[:count]))
        (out / f"{name}_val.json").write_text(json.dumps(rows[count:]))
    return out


def _png(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def image_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ShareGPT_Image: train.json + images/ in a zip; one record has two images, one the messages spelling."""
    colors = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "white": (250, 250, 250)}
    records: list[dict[str, Any]] = [
        {
            "conversations": [
                {"from": "human", "value": "<image>What color is this picture?"},
                {"from": "gpt", "value": f"It is {name}."},
            ],
            "images": [f"images/{name}.png"],
        }
        for name in colors
    ]
    records.append(
        {
            "conversations": [
                {"from": "human", "value": "Compare <image> and <image>."},
                {"from": "gpt", "value": "The first is red, the second is blue."},
            ],
            "images": ["images/red.png", "images/blue.png"],
        }
    )
    records.append(
        {
            "messages": [
                {"role": "user", "content": "<image>Describe it."},
                {"role": "assistant", "content": "A green square."},
            ],
            "images": ["images/green.png"],
        }
    )
    path = tmp_path_factory.mktemp("images") / "colors.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("train.json", json.dumps(records))
        for name, color in colors.items():
            archive.writestr(f"images/{name}.png", _png(color))
    return path


@pytest.fixture
def s3_connection_dir(s3_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The S3 server as a connection Secret mounted the way the operator mounts it; returns its name."""
    name = "models"
    folder = tmp_path / "connections" / name
    folder.mkdir(parents=True)
    for key, value in s3_server.secret(name)["stringData"].items():
        (folder / key).write_text(value)
    monkeypatch.setenv("KAIZEN_CONNECTIONS_DIR", str(folder.parent))
    return name
