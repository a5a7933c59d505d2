"""The example manifests of examples/ and how tests derive variants of them: one dotted path changed
or removed at a time."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DELETE = object()


def load_example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text())


def all_examples() -> list[tuple[str, dict[str, Any]]]:
    return [
        (p.name, doc) for p in sorted(EXAMPLES.glob("*.yaml")) for doc in yaml.safe_load_all(p.read_text())
    ]


def apply(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Copy `doc` with each dotted path set to its value, or removed when the value is DELETE."""
    doc = copy.deepcopy(doc)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return doc


@dataclass(frozen=True)
class Case:
    id: str
    example: str
    changes: dict[str, Any]
    field: str  # the path the rejection must name, e.g. spec.hyperparameters.learningRate

    def manifest(self) -> dict[str, Any]:
        return apply(load_example(self.example), self.changes)


SFT = "finetune-sft-alpaca.yaml"
DPO = "finetune-dpo.yaml"
HP = "spec.hyperparameters"
EXT = "spec.extendedHyperparameters"
LM = "evaljob-lm-eval.yaml"
STD = "evaljob-standard.yaml"
PM = "privatemodel.yaml"
GATED = "finetune-sft-gated.yaml"
S3_DATA = {"connection": {"name": "datahub"}, "bucket": "kaizen-data", "key": "d.json"}
