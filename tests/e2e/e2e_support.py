"""Reads and waits of the end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kaizen_api.base import GROUP, VERSION
from kaizen_local.demostack import DemoStack

API = f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{{plural}}"


def create(stack: DemoStack, ns: str, manifest: dict[str, Any]) -> None:
    plural = {"FineTunePipeline": "finetunepipelines", "EvalJob": "evaljobs", "PrivateModel": "privatemodels"}
    stack.cluster.request("POST", API.format(ns=ns, plural=plural[manifest["kind"]]), manifest)


def get(stack: DemoStack, ns: str, plural: str, name: str) -> dict[str, Any]:
    return stack.cluster.request("GET", f"{API.format(ns=ns, plural=plural)}/{name}")  # type: ignore[no-any-return]


def watch(
    stack: DemoStack,
    read: Callable[[], dict[str, Any]],
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
    seen: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Poll until ``done``; every status read is appended to ``seen`` (live progress is checked there)."""
    deadline = time.monotonic() + timeout
    while True:
        stack.check_operator()
        obj = read()
        if seen is not None:
            seen.append(obj.get("status") or {})
        if done(obj):
            return obj
        if time.monotonic() > deadline:
            raise AssertionError(f"not done in {timeout}s; status: {obj.get('status')}\n{pod_report(stack)}")
        time.sleep(1)


def pods(stack: DemoStack, ns: str) -> list[dict[str, Any]]:
    return list(stack.cluster.request("GET", f"/api/v1/namespaces/{ns}/pods")["items"])


def pod_report(stack: DemoStack) -> str:
    """Every pod's phase and container states: what a failing test needs to show."""
    answer = stack.cluster.request("GET", "/api/v1/pods")
    lines = []
    for pod in answer["items"]:
        states = [c.get("state") for c in (pod.get("status") or {}).get("containerStatuses") or []]
        meta = pod["metadata"]
        lines.append(f"{meta['namespace']}/{meta['name']}: {pod['status'].get('phase')} {states}")
    return "\n".join(lines)
