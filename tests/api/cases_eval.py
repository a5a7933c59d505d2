"""Invalid EvalJob manifests (and a pipeline's evaluation gate) and invalid PrivateModel manifests,
each one change from a valid example, with the field the rejection must name."""

from __future__ import annotations

from api.manifests import DELETE, GATED, LM, PM, S3_DATA, STD, Case

EVAL_CASES: list[Case] = [
    # EvalJob parameters (SPEC §4)
    Case("top-k-zero", LM, {"spec.parameters.topK": 0}, "spec.parameters.topK"),
    Case("top-k-below-minus-one", LM, {"spec.parameters.topK": -2}, "spec.parameters.topK"),
    Case("top-p-zero", LM, {"spec.parameters.topP": 0}, "spec.parameters.topP"),
    Case("top-p-above-one", LM, {"spec.parameters.topP": 1.5}, "spec.parameters.topP"),
    Case(
        "repetition-penalty-zero",
        LM,
        {"spec.parameters.repetitionPenalty": 0},
        "spec.parameters.repetitionPenalty",
    ),
    Case(
        "repetition-penalty-five",
        LM,
        {"spec.parameters.repetitionPenalty": 5},
        "spec.parameters.repetitionPenalty",
    ),
    Case("temperature-negative", LM, {"spec.parameters.temperature": -0.5}, "spec.parameters.temperature"),
    Case("max-tokens-zero", LM, {"spec.parameters.maxTokens": 0}, "spec.parameters.maxTokens"),
    Case("num-fewshot-negative", LM, {"spec.parameters.numFewshot": -1}, "spec.parameters.numFewshot"),
    Case("seed-negative", LM, {"spec.parameters.seed": -1}, "spec.parameters.seed"),
    # EvalJob suites, tasks, dataset and metrics
    Case("suite-unknown", LM, {"spec.suite": "helm"}, "spec.suite"),
    Case("lm-eval-task-from-nejumi", LM, {"spec.tasks": ["arc", "jaster"]}, "spec.tasks"),
    Case(
        "nejumi-task-from-lm-eval",
        LM,
        {"spec.suite": "nejumi-leaderboard3", "spec.tasks": ["arc"]},
        "spec.tasks",
    ),
    Case("vlm-task-from-lm-eval", LM, {"spec.suite": "vlmevalkit", "spec.tasks": ["gsm8k"]}, "spec.tasks"),
    Case("lm-eval-without-tasks", LM, {"spec.tasks": DELETE}, "spec.tasks"),
    Case("lm-eval-with-dataset", LM, {"spec.dataset": {"format": "alpaca", "s3": S3_DATA}}, "spec.dataset"),
    Case("lm-eval-with-metrics", LM, {"spec.metrics": ["bleu"]}, "spec.metrics"),
    Case("standard-without-dataset", STD, {"spec.dataset": DELETE}, "spec.dataset"),
    Case("standard-with-tasks", STD, {"spec.tasks": ["arc"]}, "spec.tasks"),
    Case("standard-with-corpus", STD, {"spec.dataset.format": "corpus"}, "spec.dataset.format"),
    Case("metric-unknown", STD, {"spec.metrics": ["meteor"]}, "spec.metrics[0]"),
    Case("job-name-dash-first", STD, {"spec.displayName": "-job"}, "spec.displayName"),
    Case("job-name-too-long", STD, {"spec.displayName": "j" * 101}, "spec.displayName"),
    Case("job-name-missing", STD, {"spec.displayName": DELETE}, "spec.displayName"),
    Case("job-description-too-long", STD, {"spec.description": "x" * 201}, "spec.description"),
    Case("eval-model-two-refs", STD, {"spec.model.catalog": "Llama-3.2-1B"}, "spec.model"),
    Case(
        "notification-bad-email",
        STD,
        {"spec.notification": {"emails": ["not-an-email"]}},
        "spec.notification.emails[0]",
    ),
    Case(
        "standard-dataset-and-predictions",
        STD,
        {"spec.predictions": {"s3": S3_DATA}},
        "spec.dataset",
    ),
    Case(
        "predictions-with-a-model",
        STD,
        {"spec.dataset": DELETE, "spec.predictions": {"s3": S3_DATA}},
        "spec.model",
    ),
    Case("lm-eval-with-predictions", LM, {"spec.predictions": {"s3": S3_DATA}}, "spec.dataset"),
    Case("eval-model-missing", LM, {"spec.model": DELETE}, "spec.model"),
    Case(
        "code-execution-without-humaneval",
        LM,
        {"spec.allowCodeExecution": True},
        "spec.allowCodeExecution",
    ),
    Case("run-token-too-long", LM, {"spec.runToken": "r" * 64}, "spec.runToken"),
    Case(
        "endpoint-url-invalid",
        LM,
        {"spec.model": {"endpoint": {"baseUrl": "vllm:8000", "model": "m"}}},
        "spec.model.endpoint.baseUrl",
    ),
    # The evaluation gate of a pipeline
    Case(
        "gate-threshold-from-another-suite",
        GATED,
        {"spec.evaluation.thresholds": [{"metric": "gsm8k/exact_match", "value": 0.3}]},
        "spec.evaluation.thresholds",
    ),
    Case(
        "gate-threshold-metric-not-chosen",
        GATED,
        {"spec.evaluation.thresholds": [{"metric": "rouge1", "value": 0.3}]},
        "spec.evaluation.thresholds",
    ),
    Case(
        "gate-lm-eval-threshold-of-another-task",
        GATED,
        {
            "spec.evaluation": {
                "suite": "lm-eval-harness",
                "tasks": ["gsm8k"],
                "thresholds": [{"metric": "arc_easy/acc", "value": 0.5}],
            }
        },
        "spec.evaluation.thresholds",
    ),
    Case(
        "gate-lm-eval-with-a-dataset",
        GATED,
        {"spec.evaluation.suite": "lm-eval-harness", "spec.evaluation.tasks": ["gsm8k"]},
        "spec.evaluation.suite",
    ),
    Case(
        "gate-standard-with-corpus",
        GATED,
        {"spec.evaluation.dataset.format": "corpus"},
        "spec.evaluation.dataset.format",
    ),
    Case(
        "gate-lm-eval-without-tasks",
        GATED,
        {
            "spec.evaluation": {
                "suite": "lm-eval-harness",
                "thresholds": [{"metric": "arc_easy/acc", "value": 0.5}],
            }
        },
        "spec.evaluation.suite",
    ),
    Case("gate-without-thresholds", GATED, {"spec.evaluation.thresholds": []}, "spec.evaluation.thresholds"),
    Case(
        "gate-operator-unknown",
        GATED,
        {"spec.evaluation.thresholds": [{"metric": "rougeL", "operator": "=>", "value": 0.4}]},
        "spec.evaluation.thresholds[0].operator",
    ),
    # PrivateModel (SPEC §5)
    Case("ip-octet-300", PM, {"spec.ipAllowList": ["192.168.300.1"]}, "spec.ipAllowList[0]"),
    Case("ip-suffix-33", PM, {"spec.ipAllowList": ["10.0.0.0/33"]}, "spec.ipAllowList[0]"),
    Case("ip-not-address", PM, {"spec.ipAllowList": ["example.com"]}, "spec.ipAllowList[0]"),
    Case("ip-v6", PM, {"spec.ipAllowList": ["::1"]}, "spec.ipAllowList[0]"),
    Case("ip-list-eleven", PM, {"spec.ipAllowList": [f"10.0.0.{i}" for i in range(11)]}, "spec.ipAllowList"),
    Case("title-missing", PM, {"spec.title": DELETE}, "spec.title"),
    Case("title-empty", PM, {"spec.title": ""}, "spec.title"),
    Case("model-size-words", PM, {"spec.modelSize": "7 billion"}, "spec.modelSize"),
    Case(
        "share-role-unknown",
        PM,
        {"spec.sharing": [{"email": "a@example.com", "tenant": "t", "role": "admin"}]},
        "spec.sharing[0].role",
    ),
    Case(
        "share-bad-email",
        PM,
        {"spec.sharing": [{"email": "a-at-example", "tenant": "t"}]},
        "spec.sharing[0].email",
    ),
    Case("deletion-policy-unknown", PM, {"spec.deletionPolicy": "Orphan"}, "spec.deletionPolicy"),
    Case("storage-two-places", PM, {"spec.storage.pvc": {"claimName": "models"}}, "spec.storage"),
    Case("tags-too-many", PM, {"spec.tags": {"other": [f"t{i}" for i in range(21)]}}, "spec.tags.other"),
]
