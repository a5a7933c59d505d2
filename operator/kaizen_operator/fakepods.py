"""Test hook: pod template labels and annotations for kwok's fake pods, taken from the pipeline.

The cluster tests run pods on kwok nodes, which "exit" as labels and annotations tell them
(tests/support/kwok/pod-*.yaml): `kaizen.dev/fake-exit-code`, `kaizen.dev/fake-termination-message`,
`kaizen.dev/fake-duration`. Only when the operator runs with `KAIZEN_FAKE_PODS=1` (the test suite)
does it copy them from the pipeline annotation `kaizen.dev/fake-pods`, JSON of the form
`{"preflight": {"labels": {...}, "annotations": {...}}, "workload": {...}}`, onto the pod templates
of that stage; its `"gate"` entry becomes the `workload` entry of the evaluation gate's EvalJob
(`gate_annotations`). Otherwise the annotation is ignored; only `kaizen.dev/fake-*` keys are ever copied.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

ANNOTATION = "kaizen.dev/fake-pods"
ENV = "KAIZEN_FAKE_PODS"
PREFIX = "kaizen.dev/fake-"


def _templates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest.get("spec") or {}
    if manifest.get("kind") == "Job":
        return [spec["template"]]
    if manifest.get("kind") == "PyTorchJob":
        return [replica["template"] for replica in (spec.get("pytorchReplicaSpecs") or {}).values()]
    return []


def apply(
    pipeline: dict[str, Any], stage: Literal["preflight", "workload"], manifests: list[dict[str, Any]]
) -> None:
    if os.environ.get(ENV) != "1":
        return
    raw = ((pipeline.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    if not raw:
        return
    overlay = json.loads(raw).get(stage) or {}
    for manifest in manifests:
        for template in _templates(manifest):
            meta = template.setdefault("metadata", {})
            for field in ("labels", "annotations"):
                wanted = {k: str(v) for k, v in (overlay.get(field) or {}).items() if k.startswith(PREFIX)}
                if wanted:
                    meta[field] = {**(meta.get(field) or {}), **wanted}


def gate_annotations(pipeline: dict[str, Any]) -> dict[str, str]:
    """The gate EvalJob's own `kaizen.dev/fake-pods`: the pipeline's `gate` entry as its workload."""
    if os.environ.get(ENV) != "1":
        return {}
    raw = ((pipeline.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    gate = json.loads(raw).get("gate") if raw else None
    return {ANNOTATION: json.dumps({"workload": gate})} if gate else {}
