"""Invalid values that another API reads: a Pod's resources, node selector and tolerations (the run's
Pod would be refused after admission). Each is one change from a valid example, with the field the
rejection must name; VALUE_VARIANTS must still be admitted."""

from __future__ import annotations

from api.manifests import SFT, Case

RES = "spec.resources"


def toleration(case_id: str, toleration: dict, field: str) -> Case:
    return Case(case_id, SFT, {RES: {"tolerations": [toleration]}}, f"{RES}.tolerations[0].{field}")


VALUE_CASES: list[Case] = [
    # resource.Quantity, non-negative
    *(
        Case(f"{name}-{value}", SFT, {RES: {name: value}}, f"{RES}.{name}")
        for name, value in (
            ("cpu", "1.2.3"),
            ("cpu", "..."),
            ("cpu", "-1"),
            ("memory", "1KMG"),
            ("memory", "1e1.5"),
        )
    ),
    # label keys and values
    Case("node-selector-bad-key", SFT, {RES: {"nodeSelector": {"bad key!": "a"}}}, f"{RES}.nodeSelector"),
    Case(
        "node-selector-long-prefix",
        SFT,
        {RES: {"nodeSelector": {"a" * 254 + "/zone": "a"}}},
        f"{RES}.nodeSelector",
    ),
    Case(
        "node-selector-bad-value",
        SFT,
        {RES: {"nodeSelector": {"zone": "bad value!"}}},
        f"{RES}.nodeSelector.zone",
    ),
    # tolerations the Pod API refuses
    toleration("toleration-exists-with-value", {"key": "gpu", "operator": "Exists", "value": "a"}, "value"),
    toleration("toleration-equal-without-key", {"operator": "Equal", "value": "a"}, "key"),
    toleration("toleration-default-without-key", {"value": "a"}, "key"),
    toleration("toleration-bad-key", {"key": "bad key", "operator": "Exists"}, "key"),
    toleration("toleration-bad-value", {"key": "gpu", "value": "a b"}, "value"),
    toleration(
        "toleration-seconds-without-noexecute", {"key": "gpu", "tolerationSeconds": 30}, "tolerationSeconds"
    ),
]

VALUE_VARIANTS: list[Case] = [
    Case("quantities", SFT, {RES: {"cpu": "500m", "memory": "64Gi"}}, ""),
    Case("quantities-fraction-exponent", SFT, {RES: {"cpu": ".5", "memory": "1.5e9"}}, ""),
    Case(
        "node-selector-prefixed",
        SFT,
        {RES: {"nodeSelector": {"topology.kubernetes.io/zone": "zone-a", "gpu": ""}}},
        "",
    ),
    Case(
        "tolerations",
        SFT,
        {
            RES: {
                "tolerations": [
                    {"operator": "Exists"},
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "spot", "value": "true", "effect": "NoExecute", "tolerationSeconds": 60},
                ]
            }
        },
        "",
    ),
]
