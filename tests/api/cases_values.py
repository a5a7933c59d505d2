"""Invalid values that another API or the other regex engine reads: a Pod's resources, node selector
and tolerations (the run's Pod would be refused after admission), and text with spaces or control
characters the API server's RE2 and pydantic's regex engine must judge alike. Each is one change
from a valid example, with the field the rejection must name; VALUE_VARIANTS must still be admitted."""

from __future__ import annotations

from api.manifests import DELETE, LM, PM, SFT, STD, Case

RES = "spec.resources"
NBSP, VT = "\u00a0", "\x0b"  # Unicode's no-break space; ASCII's vertical tab, not in RE2's \s
URL_ONLY = {"spec.dataset.s3": DELETE, "spec.validationDataset": DELETE}


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
    # spaces and control characters, which `\s` would have judged differently in the two engines
    Case(
        "url-nbsp",
        SFT,
        {**URL_ONLY, "spec.dataset.url": f"https://h.example/a{NBSP}b.json"},
        "spec.dataset.url",
    ),
    Case(
        "url-vertical-tab",
        SFT,
        {**URL_ONLY, "spec.dataset.url": f"https://h.example/a{VT}b.json"},
        "spec.dataset.url",
    ),
    Case("hf-uri-nbsp", SFT, {"spec.baseModel": {"uri": f"hf://Qwen/Qwen2.5{NBSP}x"}}, "spec.baseModel.uri"),
    Case(
        "hf-uri-vertical-tab",
        SFT,
        {"spec.baseModel": {"uri": f"hf://Qwen/Qwen2.5{VT}x"}},
        "spec.baseModel.uri",
    ),
    Case(
        "endpoint-url-nbsp",
        LM,
        {"spec.model": {"endpoint": {"baseUrl": f"http://vllm:8000/v1{NBSP}", "model": "m"}}},
        "spec.model.endpoint.baseUrl",
    ),
    Case("avatar-url-vertical-tab", PM, {"spec.avatarUrl": f"https://h.example/a{VT}.png"}, "spec.avatarUrl"),
    # credentials in a URL's userinfo: the URL reaches the run's ConfigMap, status and messages
    Case(
        "endpoint-url-userinfo",
        LM,
        {"spec.model": {"endpoint": {"baseUrl": "https://u:sk-secret@vllm.example/v1", "model": "m"}}},
        "spec.model.endpoint.baseUrl",
    ),
    Case(
        "dataset-url-userinfo",
        SFT,
        {**URL_ONLY, "spec.dataset.url": "https://u:pw@data.example/d.json"},
        "spec.dataset.url",
    ),
    Case(
        "predictions-url-userinfo",
        STD,
        {
            "spec.dataset": DELETE,
            "spec.model": DELETE,
            "spec.predictions": {"url": "http://token@data.example/p.jsonl"},
        },
        "spec.predictions.url",
    ),
    Case(
        "base-model-uri-userinfo",
        SFT,
        {"spec.baseModel": {"uri": "hf://u:hf_x@Qwen/Q"}},
        "spec.baseModel.uri",
    ),
    Case(
        "eval-model-uri-userinfo", LM, {"spec.model": {"uri": "s3://key:secret@models/m"}}, "spec.model.uri"
    ),
    Case("avatar-url-userinfo", PM, {"spec.avatarUrl": "https://u:p@h.example/a.png"}, "spec.avatarUrl"),
    Case(
        "share-email-nbsp",
        PM,
        {"spec.sharing": [{"email": f"ana{NBSP}@example.com", "tenant": "t"}]},
        "spec.sharing[0].email",
    ),
    Case(
        "notification-email-vertical-tab",
        STD,
        {"spec.notification": {"emails": [f"ana@exa{VT}mple.com"]}},
        "spec.notification.emails[0]",
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
    Case(
        "url-non-ascii",
        SFT,
        {**URL_ONLY, "spec.dataset.url": "https://データ.example.jp/学習/train.json"},
        "",
    ),
    Case(  # an @ after the host is a path or query, not credentials
        "url-at-after-host",
        SFT,
        {**URL_ONLY, "spec.dataset.url": "https://data.example/team@x/train.json?by=a@b.c"},
        "",
    ),
]
