"""The demo's live view (`kaizen_local.demowatch`, the README's `tools/dev.sh demo`): the server's
printer-column Table of the CRDs, with the headline metrics appended from each object's status."""

from __future__ import annotations

import pytest
from ftp_support import PIPELINES, pipeline
from kaizen_api.finetune_status import LossPoint, RunMetrics, RunProgress, RunStatus
from kaizen_local.demowatch import rows

pytestmark = pytest.mark.cluster


def finished(name: str, step: int, loss: float) -> dict:
    run = RunStatus(
        name=name,
        object_name=name.replace("_", "-").lower(),
        phase="Succeeded",
        progress=RunProgress(step=step, total_steps=step, percentage=100),
        metrics=RunMetrics(train_total_loss=loss),
        loss_history=[LossPoint(step=step, loss=loss)],
    )
    return run.to_manifest()


def test_a_pipeline_between_runs_shows_its_newest_runs_metrics(control_plane, namespace) -> None:
    """status.runs is newest first; with no run active (no currentRun) the view showed the oldest. And a
    whole-number loss, which the API server writes as an integer, was left out."""
    control_plane.request("POST", PIPELINES.format(namespace), pipeline("twice"))
    newest, oldest = finished("ft_m_20261202000000", 8, 0.5), finished("ft_m_20261201000000", 4, 2.0)
    control_plane.request(
        "PATCH",
        f"{PIPELINES.format(namespace)}/twice/status",
        {"status": {"phase": "Succeeded", "runs": [newest, oldest]}},
        content_type="application/merge-patch+json",
    )
    _header, row = rows(control_plane, namespace, "finetunepipelines", "ftp")
    assert row[0] == "ftp/twice" and row[-1] == "step=8 trainTotalLoss=0.5"
    whole = {"status": {"runs": [finished("ft_m_20261203000000", 9, 2.0), newest, oldest]}}
    control_plane.request(
        "PATCH",
        f"{PIPELINES.format(namespace)}/twice/status",
        whole,
        content_type="application/merge-patch+json",
    )
    _header, row = rows(control_plane, namespace, "finetunepipelines", "ftp")
    assert row[-1] == "step=9 trainTotalLoss=2", "the API server sends 2.0 as 2: still a loss"
