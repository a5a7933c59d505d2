"""The demo's and the end-to-end tests' objects: sized so a real run on the tiny model takes seconds
on two CPU cores (no GPU requested, a handful of optimizer steps, short sequences)."""

from __future__ import annotations

import copy
from typing import Any

from kaizen_api.base import GROUP, VERSION

from kaizen_local.demostack import DATA_BUCKET, MODELS_BUCKET, TINY_MODEL

API_VERSION = f"{GROUP}/{VERSION}"
DATAHUB = {"name": "datahub"}
TRAIN_KEY, TEST_KEY = "samples/alpaca_train_mini.json", "samples/alpaca_test_mini.json"
CPU_ONLY = {"gpusPerNode": 0, "cpu": "500m", "memory": "3Gi"}
# 500 records in batches of 50, a checkpoint every 4 steps; the records whose prompt alone fills 128
# tokens have nothing left to learn and are dropped (the preflight counts them): about 6 steps.
HYPERPARAMETERS = {
    "learningRate": 0.001,
    "batchSize": 50,
    "epochs": 1,
    "gradientAccumulationSteps": 1,
    "checkpointSteps": 4,
    "maxSequenceLength": 128,
}
# The demo's and the pipeline test's run: five passes (about 30 steps, several seconds of training), so
# the progress reports (at most one a second) show it between 0 and 100 % even on a fast, idle machine.
WATCHED = {**HYPERPARAMETERS, "epochs": 5}


def private_model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "PrivateModel",
        "metadata": {"name": name},
        "spec": {
            "title": "Tiny demo assistant",
            "baseModel": TINY_MODEL,
            "storage": {"s3": {"connection": DATAHUB, "bucket": MODELS_BUCKET, "key": f"{name}/"}},
        },
    }


def pipeline(name: str, output: str, **spec: Any) -> dict[str, Any]:
    """LoRA SFT of the tiny model on the shared Alpaca sample; ``spec`` overrides top-level fields."""
    body: dict[str, Any] = {
        "displayName": f"demo_{name}",
        "trainer": "sft",
        "baseModel": {"catalog": TINY_MODEL},
        "dataset": {
            "format": "alpaca",
            "s3": {"connection": DATAHUB, "bucket": DATA_BUCKET, "key": TRAIN_KEY},
        },
        "hyperparameters": copy.deepcopy(HYPERPARAMETERS),
        # a loss per step, so the live view shows the curve move
        "extendedHyperparameters": {"runtime": {"mixedPrecision": "none"}, "others": {"loggingSteps": 1}},
        "resources": copy.deepcopy(CPU_ONLY),
        "output": {"privateModel": output},
        "activeDeadlineSeconds": 1200,
    }
    body.update(spec)
    return {"apiVersion": API_VERSION, "kind": "FineTunePipeline", "metadata": {"name": name}, "spec": body}


def evaljob(name: str, model: str, version: str | None = None) -> dict[str, Any]:
    """The standard suite on the shared Alpaca test sample, scoring a PrivateModel version."""
    ref: dict[str, Any] = {"name": model, **({"version": version} if version else {})}
    return {
        "apiVersion": API_VERSION,
        "kind": "EvalJob",
        "metadata": {"name": name},
        "spec": {
            "displayName": f"demo_{name}",
            "model": {"privateModel": ref},
            "suite": "standard",
            "dataset": {
                "format": "alpaca",
                "s3": {"connection": DATAHUB, "bucket": DATA_BUCKET, "key": TEST_KEY},
            },
            "metrics": ["bleu", "rouge1", "rougeL", "fuzzy_match"],
            "parameters": {"maxTokens": 16, "temperature": 0, "seed": 7},
            "resources": copy.deepcopy(CPU_ONLY),
            "output": {"s3": {"connection": DATAHUB, "bucket": MODELS_BUCKET, "key": f"evaluations/{name}/"}},
        },
    }
