"""A `kubectl get ftp,ej -w`-style view: the server renders the CRDs' printer columns (a Table), and a
row is printed whenever it changes, with the latest metrics appended from the object's status."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kaizen_api.base import GROUP, VERSION
from kaizen_api.finetune_status import RunMetrics

from kaizen_local.cluster import Cluster

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
SKIP_COLUMNS = {"Age", "Display Name", "Job Name", "Tasks"}  # long or static: left out of the watch


def table(cluster: Cluster, namespace: str, plural: str) -> dict[str, Any]:
    with cluster.api_client() as api:
        request = api.param_serialize(
            "GET",
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}",
            header_params={"Accept": TABLE},
            query_params=[("includeObject", "Object")],
            auth_settings=["BearerToken"],
        )
        response = api.call_api(*request)
        response.read()
        return json.loads(response.data)  # type: ignore[no-any-return]


def metrics_cell(plural: str, obj: dict[str, Any]) -> str:
    """The headline numbers: a pipeline's current (or last) run's loss, an EvalJob's scores."""
    status = obj.get("status") or {}
    if plural == "finetunepipelines":
        runs = status.get("runs") or []  # newest first
        run = status.get("currentRun") or (runs[0] if runs else {})
        # Through the model: the API server writes a whole-number loss (2.0) as 2, which json reads as int.
        metrics = RunMetrics.model_validate(run.get("metrics") or {}).to_manifest()
        step = (run.get("progress") or {}).get("step")
        parts = [f"step={step}"] if step is not None else []
        parts += [f"{k}={v:.4g}" for k, v in metrics.items() if not k.endswith("NumPredictions")]
        return " ".join(parts)
    results = status.get("results") or {}
    return " ".join(f"{k}={v:.3g}" for k, v in results.items() if isinstance(v, (int, float)))


def rows(cluster: Cluster, namespace: str, plural: str, short: str) -> list[list[str]]:
    """The header, then one row per object."""
    answer = table(cluster, namespace, plural)
    columns = answer["columnDefinitions"]
    keep = [i for i, c in enumerate(columns) if c["priority"] == 0 and c["name"] not in SKIP_COLUMNS]
    out = [[columns[i]["name"].upper() for i in keep] + ["METRICS"]]
    for row in answer["rows"]:
        cells = ["<none>" if row["cells"][i] in (None, "") else str(row["cells"][i]) for i in keep]
        cells[0] = f"{short}/{cells[0]}"
        out.append([*cells, metrics_cell(plural, row.get("object") or {})])
    return out


class Watch:
    """Prints changed rows of the watched kinds until ``done`` says so (or the timeout passes)."""

    def __init__(
        self, cluster: Cluster, namespace: str, kinds: dict[str, str], out: Callable[[str], None] = print
    ):
        self.cluster, self.namespace, self.kinds, self.out = cluster, namespace, kinds, out
        self.seen: dict[str, str] = {}

    def poll(self) -> None:
        for plural, short in self.kinds.items():
            header, *found = rows(self.cluster, self.namespace, plural, short)
            if found and plural not in self.seen:
                self.seen[plural] = ""
                self.out("          " + "  ".join(cell.ljust(12) for cell in header))
            for cells in found:
                line = "  ".join(cell.ljust(12) for cell in cells[:-1]) + "  " + cells[-1]
                if self.seen.get(cells[0]) != line:
                    self.seen[cells[0]] = line
                    self.out(f"{time.strftime('%H:%M:%S')}  {line}")

    def until(self, done: Callable[[], bool], timeout: float, interval: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            if done():
                self.poll()
                return True
            time.sleep(interval)
        return False
