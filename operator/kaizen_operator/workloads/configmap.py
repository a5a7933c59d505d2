"""The run's configuration (a ConfigMap) and its progress token (a Secret), both immutable.

The ConfigMap holds only the TrainRunConfig: connection *names*, never credentials, which reach
pods as Secret volumes (see `kaizen_operator.resolve`). The token authorises progress reports of
this one run and reaches pods only through a secretKeyRef.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kaizen_operator.naming import ChildNames
from kaizen_operator.resolve import CONFIG_FILE, ResolvedRun
from kaizen_operator.workloads.meta import CONFIG, DISPLAY_NAME_ANNOTATION, object_meta, run_labels
from kaizen_operator.workloads.pod import TOKEN_KEY

TOKEN = "token"


def build_config_map(run: ResolvedRun, pipeline: Mapping[str, Any], names: ChildNames) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(
            names.config_map,
            pipeline,
            run_labels(run.pipeline_name, names.run, CONFIG),
            {DISPLAY_NAME_ANNOTATION: run.config.run_name},
        ),
        "immutable": True,
        "data": {CONFIG_FILE: run.config_json},
    }


def build_token_secret(names: ChildNames, pipeline: Mapping[str, Any], token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": object_meta(
            names.token_secret, pipeline, run_labels(pipeline["metadata"]["name"], names.run, TOKEN)
        ),
        "immutable": True,
        "stringData": {TOKEN_KEY: token},
    }
