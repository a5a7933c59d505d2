"""Operator settings: defaults, a YAML file, KAIZEN_* variables over it, and errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest
from kaizen_operator.settings import HOSTED_QUOTAS, SettingsError, load_settings


def test_defaults_have_no_quotas() -> None:
    settings = load_settings({})
    assert settings.quotas.max_pipelines is None and settings.quotas.max_concurrent_runs is None
    assert settings.multinode_backend == "auto"
    assert HOSTED_QUOTAS == {"max_pipelines": 20, "max_concurrent_runs": 2, "max_nodes_per_run": 2}


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    config = tmp_path / "operator.yaml"
    config.write_text(
        "runner_image: registry.local/runner:1\nbackoff_limit: 5\n"
        "quotas: {max_pipelines: 20, max_concurrent_runs: 2}\npods: {preflight_memory: 2Gi}\n"
    )
    settings = load_settings(
        {
            "KAIZEN_OPERATOR_CONFIG": str(config),
            "KAIZEN_BACKOFF_LIMIT": "1",
            "KAIZEN_QUOTA_MAX_NODES_PER_RUN": "2",
            "KAIZEN_QUOTA_MAX_PIPELINES": "off",
            "KAIZEN_MULTINODE_BACKEND": "indexedjob",
            "KAIZEN_PROGRESS_URL": "http://op.kaizen:8081/",
            "KAIZEN_IMAGE_PULL_SECRETS": "registry-a, registry-b",
        }
    )
    assert settings.runner_image == "registry.local/runner:1"
    assert settings.backoff_limit == 1
    assert settings.quotas.max_pipelines is None
    assert settings.quotas.max_concurrent_runs == 2 and settings.quotas.max_nodes_per_run == 2
    assert settings.pods.preflight_memory == "2Gi"
    assert settings.multinode_backend == "indexedjob"
    assert settings.image_pull_secrets == ("registry-a", "registry-b")
    assert settings.run_progress_url("team-a", "run-1") == "http://op.kaizen:8081/runs/team-a/run-1"


@pytest.mark.parametrize(
    "environ,needle",
    [
        ({"KAIZEN_MULTINODE_BACKEND": "mpi"}, "multinode_backend"),
        ({"KAIZEN_QUOTA_MAX_NODES_PER_RUN": "0"}, "max_nodes_per_run"),
        ({"KAIZEN_OPERATOR_CONFIG": "/nonexistent/operator.yaml"}, "cannot read"),
    ],
)
def test_bad_settings_name_the_setting(environ: dict, needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ)
    assert needle in str(info.value)


def test_unknown_setting_in_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "operator.yaml"
    config.write_text("runner_imag: typo\n")
    with pytest.raises(SettingsError, match="runner_imag"):
        load_settings({"KAIZEN_OPERATOR_CONFIG": str(config)})
