"""Invalid manifests, each derived from a valid example by one change, with the field the rejection
must name. Both the API server (CEL + OpenAPI schema) and the pydantic models must reject each one.
This module holds the FineTunePipeline's and the edges every rule must still admit; the EvalJob's and
PrivateModel's invalid manifests are in cases_eval.py."""

from __future__ import annotations

from api.cases_eval import EVAL_CASES
from api.cases_values import VALUE_CASES, VALUE_VARIANTS
from api.manifests import DELETE, DPO, EXT, HP, LM, PM, S3_DATA, SFT, STD, Case

PIPELINE_CASES: list[Case] = [
    # core hyperparameters: ranges and enums
    Case("lr-too-low", SFT, {f"{HP}.learningRate": 0.000001}, f"{HP}.learningRate"),
    Case("lr-too-high", SFT, {f"{HP}.learningRate": 0.01}, f"{HP}.learningRate"),
    # a whole number is checked against int(minimum): 0 would pass a schema minimum of 1e-5
    Case("lr-zero", SFT, {f"{HP}.learningRate": 0}, f"{HP}.learningRate"),
    Case("batch-size-zero", SFT, {f"{HP}.batchSize": 0}, f"{HP}.batchSize"),
    Case("epochs-zero", SFT, {f"{HP}.epochs": 0}, f"{HP}.epochs"),
    Case("grad-accum-zero", SFT, {f"{HP}.gradientAccumulationSteps": 0}, f"{HP}.gradientAccumulationSteps"),
    Case("checkpoint-steps-zero", SFT, {f"{HP}.checkpointSteps": 0}, f"{HP}.checkpointSteps"),
    Case("max-seq-len-zero", SFT, {f"{HP}.maxSequenceLength": 0}, f"{HP}.maxSequenceLength"),
    Case("finetuning-type-unknown", SFT, {f"{HP}.finetuningType": "qlora"}, f"{HP}.finetuningType"),
    Case("backend-unknown", SFT, {f"{HP}.distributedBackend": "fsdp"}, f"{HP}.distributedBackend"),
    Case(
        "zero-stage-4",
        SFT,
        {f"{HP}.distributedBackend": "deepspeed", f"{HP}.deepspeedZeroStage": 4},
        f"{HP}.deepspeedZeroStage",
    ),
    Case("zero-stage-without-deepspeed", SFT, {f"{HP}.deepspeedZeroStage": 2}, f"{HP}.deepspeedZeroStage"),
    Case("unknown-hyperparameter", SFT, {f"{HP}.learningrate": 0.0001}, f"{HP}.learningrate"),
    # trainer and data-format table
    Case("trainer-unknown", SFT, {"spec.trainer": "ppo"}, "spec.trainer"),
    Case(
        "pretraining-with-alpaca",
        SFT,
        {"spec.trainer": "pretraining", "spec.validationDataset": DELETE},
        "spec.dataset.format",
    ),
    Case(
        "dpo-with-alpaca",
        SFT,
        {"spec.trainer": "dpo", "spec.validationDataset": DELETE},
        "spec.dataset.format",
    ),
    Case(
        "sft-with-corpus",
        SFT,
        {"spec.dataset.format": "corpus", "spec.validationDataset": DELETE},
        "spec.dataset.format",
    ),
    Case(
        "validation-format-differs",
        SFT,
        {"spec.validationDataset.format": "sharegpt"},
        "spec.validationDataset.format",
    ),
    Case("format-unknown", SFT, {"spec.dataset.format": "csv"}, "spec.dataset.format"),
    # data sources
    Case("dataset-two-sources", SFT, {"spec.dataset.url": "https://example.com/d.json"}, "spec.dataset"),
    Case("dataset-no-source", SFT, {"spec.dataset.s3": DELETE}, "spec.dataset"),
    Case(
        "dataset-url-not-http",
        SFT,
        {"spec.dataset.s3": DELETE, "spec.dataset.url": "ftp://example.com/d.json"},
        "spec.dataset.url",
    ),
    Case(
        "pvc-path-traversal",
        SFT,
        {"spec.dataset.s3": DELETE, "spec.dataset.pvc": {"claimName": "uploads", "path": "a/../../etc"}},
        "spec.dataset.pvc.path",
    ),
    Case(
        "pvc-path-absolute",
        SFT,
        {"spec.dataset.s3": DELETE, "spec.dataset.pvc": {"claimName": "uploads", "path": "/etc/passwd"}},
        "spec.dataset.pvc.path",
    ),
    Case(
        "bucket-invalid",
        SFT,
        {"spec.dataset.s3": {**S3_DATA, "bucket": "Kaizen_Data"}},
        "spec.dataset.s3.bucket",
    ),
    Case(
        "connection-missing",
        SFT,
        {"spec.dataset.s3": {"bucket": "kaizen-data", "key": "d.json"}},
        "spec.dataset.s3.connection",
    ),
    # display name and description
    Case("display-name-underscore-first", SFT, {"spec.displayName": "_sft"}, "spec.displayName"),
    Case("display-name-space", SFT, {"spec.displayName": "my run"}, "spec.displayName"),
    Case("display-name-too-long", SFT, {"spec.displayName": "a" * 101}, "spec.displayName"),
    Case("description-too-long", SFT, {"spec.description": "d" * 201}, "spec.description"),
    # trigger
    Case("schedule-missing", SFT, {"spec.trigger": {"type": "schedule"}}, "spec.trigger.schedule"),
    Case(
        "schedule-on-manual",
        SFT,
        {"spec.trigger": {"type": "manual", "schedule": "0 2 * * *"}},
        "spec.trigger.schedule",
    ),
    Case(
        "schedule-not-cron",
        SFT,
        {"spec.trigger": {"type": "schedule", "schedule": "every night"}},
        "spec.trigger.schedule",
    ),
    Case(
        "time-zone-invalid",
        SFT,
        {"spec.trigger": {"type": "schedule", "schedule": "@daily", "timeZone": "Asia Tokyo"}},
        "spec.trigger.timeZone",
    ),
    Case(
        "concurrency-unknown",
        SFT,
        {"spec.trigger": {"type": "manual", "concurrencyPolicy": "Sometimes"}},
        "spec.trigger.concurrencyPolicy",
    ),
    Case("trigger-type-unknown", SFT, {"spec.trigger": {"type": "webhook"}}, "spec.trigger.type"),
    # cron fields out of range and unknown time zones: the CronJob would only fail when created
    *(
        Case(
            f"schedule-{name}",
            SFT,
            {"spec.trigger": {"type": "schedule", "schedule": cron}},
            "spec.trigger.schedule",
        )
        for name, cron in (
            ("minute-61", "61 2 * * *"),
            ("hour-24", "0 24 * * *"),
            ("day-zero", "0 2 0 * *"),
            ("day-32", "0 2 32 * *"),
            ("month-13", "0 2 * 13 *"),
            ("weekday-8", "0 2 * * 8"),
            ("step-zero", "*/0 * * * *"),
            ("month-name-unknown", "0 2 * FOO *"),
            ("six-fields", "0 0 2 * * *"),
            # what the CronJob API's parser refuses: weekday 7, a reversed range, a step overflowing int
            ("weekday-7", "0 0 * * 7"),
            ("weekday-range-to-7", "0 0 * * 0-7"),
            ("range-reversed", "5-2 * * * *"),
            ("weekday-names-reversed", "0 0 * * FRI-MON"),
            ("step-overflow", "*/99999999999999999999 * * * *"),
            # fields apart by a Unicode space or a vertical tab (RE2's \s has neither)
            ("nbsp-separator", "0\u00a00 * * *"),
            ("vertical-tab-separator", "0\x0b0 * * *"),
        )
    ),
    Case(
        "time-zone-unknown",
        SFT,
        {"spec.trigger": {"type": "schedule", "schedule": "@daily", "timeZone": "Mars/Olympus"}},
        "spec.trigger.timeZone",
    ),
    # a file whose extension the format does not take
    Case(
        "alpaca-txt-s3",
        SFT,
        {"spec.dataset.s3": {**S3_DATA, "key": "samples/alpaca.txt"}},
        "spec.dataset.s3.key",
    ),
    Case(
        "alpaca-txt-pvc",
        SFT,
        {"spec.dataset.s3": DELETE, "spec.dataset.pvc": {"claimName": "uploads", "path": "alpaca/train.TXT"}},
        "spec.dataset.pvc.path",
    ),
    Case(
        "image-json-url",
        "finetune-sft-image.yaml",
        {"spec.dataset.s3": DELETE, "spec.dataset.url": "https://data.example.com/vlm/charts.json?sig=a.zip"},
        "spec.dataset.url",
    ),
    Case(
        "csv-with-final-newline",
        SFT,
        {"spec.dataset.s3": {**S3_DATA, "key": "samples/alpaca.csv\n"}, "spec.validationDataset": DELETE},
        "spec.dataset.s3.key",
    ),
    Case(
        "validation-csv-sharegpt",
        SFT,
        {
            "spec.dataset.format": "sharegpt",
            "spec.dataset.s3": {**S3_DATA, "key": "chat/train.jsonl"},
            "spec.validationDataset.format": "sharegpt",
            "spec.validationDataset.s3": {**S3_DATA, "key": "chat/val.csv"},
        },
        "spec.validationDataset.s3.key",
    ),
    Case(
        "eval-dataset-parquet-ok-txt-not",
        STD,
        {"spec.dataset.s3.key": "samples/test.txt"},
        "spec.dataset.s3.key",
    ),
    # base model
    Case(
        "base-model-two-refs",
        SFT,
        {"spec.baseModel.uri": "hf://Qwen/Qwen2.5-0.5B-Instruct"},
        "spec.baseModel",
    ),
    Case("base-model-empty", SFT, {"spec.baseModel": {}}, "spec.baseModel"),
    Case("base-model-uri-scheme", SFT, {"spec.baseModel": {"uri": "ftp://models/x"}}, "spec.baseModel.uri"),
    Case(
        "private-model-name-invalid",
        SFT,
        {"spec.baseModel": {"privateModel": {"name": "Bad_Name"}}},
        "spec.baseModel.privateModel.name",
    ),
    # extended hyperparameters
    Case(
        "qlora-with-full",
        SFT,
        {f"{HP}.finetuningType": "full", f"{EXT}.runtime": {"quantizationBit": 4}},
        f"{EXT}.runtime.quantizationBit",
    ),
    Case(
        "quantization-bit-2",
        SFT,
        {f"{EXT}.runtime": {"quantizationBit": 2}},
        f"{EXT}.runtime.quantizationBit",
    ),
    Case(
        "mixed-precision-fp8",
        SFT,
        {f"{EXT}.runtime": {"mixedPrecision": "fp8"}},
        f"{EXT}.runtime.mixedPrecision",
    ),
    Case("warmup-ratio-one", SFT, {f"{EXT}.runtime": {"lrWarmupRatio": 1.0}}, f"{EXT}.runtime.lrWarmupRatio"),
    Case(
        "scheduler-unknown",
        SFT,
        {f"{EXT}.runtime": {"lrSchedulerType": "step"}},
        f"{EXT}.runtime.lrSchedulerType",
    ),
    Case("optimizer-unknown", SFT, {f"{EXT}.runtime": {"optimizer": "lion"}}, f"{EXT}.runtime.optimizer"),
    Case(
        "weight-decay-negative", SFT, {f"{EXT}.runtime": {"weightDecay": -0.1}}, f"{EXT}.runtime.weightDecay"
    ),
    Case("pref-beta-above-one", SFT, {f"{EXT}.dpo": {"prefBeta": 1.5}}, f"{EXT}.dpo.prefBeta"),
    Case(
        "label-smoothing-high",
        SFT,
        {f"{EXT}.dpo": {"dpoLabelSmoothing": 0.6}},
        f"{EXT}.dpo.dpoLabelSmoothing",
    ),
    Case(
        "label-smoothing-half",
        DPO,
        {f"{EXT}.dpo": {"prefLoss": "sigmoid", "dpoLabelSmoothing": 0.5}},
        f"{EXT}.dpo.dpoLabelSmoothing",
    ),
    Case(
        "label-smoothing-with-hinge",
        DPO,
        {f"{EXT}.dpo": {"prefLoss": "hinge", "dpoLabelSmoothing": 0.1}},
        f"{EXT}.dpo.dpoLabelSmoothing",
    ),
    Case(
        "label-smoothing-with-ipo",
        DPO,
        {f"{EXT}.dpo": {"prefLoss": "ipo", "dpoLabelSmoothing": 0.2}},
        f"{EXT}.dpo.dpoLabelSmoothing",
    ),
    Case("kto-pair-default-batch", DPO, {f"{EXT}.dpo": {"prefLoss": "kto_pair"}}, f"{HP}.batchSize"),
    Case(
        "kto-pair-batch-one",
        DPO,
        {f"{EXT}.dpo": {"prefLoss": "kto_pair"}, f"{HP}.batchSize": 1},
        f"{HP}.batchSize",
    ),
    Case("pref-ftx-high", SFT, {f"{EXT}.dpo": {"prefFtx": 11}}, f"{EXT}.dpo.prefFtx"),
    Case(
        "pref-ftx-with-orpo", DPO, {f"{EXT}.dpo": {"prefLoss": "orpo", "prefFtx": 0.5}}, f"{EXT}.dpo.prefFtx"
    ),
    Case(
        "pref-ftx-with-kto-pair",
        DPO,
        {f"{EXT}.dpo": {"prefLoss": "kto_pair", "prefFtx": 0.5}, f"{HP}.batchSize": 2},
        f"{EXT}.dpo.prefFtx",
    ),
    Case("pref-loss-unknown", SFT, {f"{EXT}.dpo": {"prefLoss": "kto"}}, f"{EXT}.dpo.prefLoss"),
    Case("simpo-gamma-zero", SFT, {f"{EXT}.dpo": {"simpoGamma": 0}}, f"{EXT}.dpo.simpoGamma"),
    Case("lora-dropout-high", SFT, {f"{EXT}.lora": {"loraDropout": 1.5}}, f"{EXT}.lora.loraDropout"),
    Case("lora-rank-zero", SFT, {f"{EXT}.lora": {"loraRank": 0}}, f"{EXT}.lora.loraRank"),
    Case(
        "checkpoint-strategy-unknown",
        SFT,
        {f"{EXT}.others": {"checkpointStrategy": "always"}},
        f"{EXT}.others.checkpointStrategy",
    ),
    Case(
        "checkpoints-kept-zero",
        SFT,
        {f"{EXT}.others": {"numberOfCheckpoints": 0}},
        f"{EXT}.others.numberOfCheckpoints",
    ),
    Case("eval-steps-zero", SFT, {f"{EXT}.others": {"evalSteps": 0}}, f"{EXT}.others.evalSteps"),
    # resources and output
    Case("nodes-zero", SFT, {"spec.resources": {"nodes": 0}}, "spec.resources.nodes"),
    Case("gpus-negative", SFT, {"spec.resources": {"gpusPerNode": -1}}, "spec.resources.gpusPerNode"),
    Case("memory-not-quantity", SFT, {"spec.resources": {"memory": "lots"}}, "spec.resources.memory"),
    Case("queue-name-invalid", SFT, {"spec.resources": {"queueName": "Team_A"}}, "spec.resources.queueName"),
    Case(
        "toleration-operator-unknown",
        SFT,
        {"spec.resources": {"tolerations": [{"operator": "Maybe"}]}},
        "spec.resources.tolerations[0].operator",
    ),
    Case("output-missing", SFT, {"spec.output": DELETE}, "spec.output"),
]

CASES: list[Case] = [*PIPELINE_CASES, *EVAL_CASES, *VALUE_CASES]

# Manifests that must still be admitted: each admission rule above has edges it must not refuse.
VALID_VARIANTS: list[Case] = [
    *(
        Case(f"cron-{i}", SFT, {"spec.trigger": {"type": "schedule", "schedule": cron}}, "")
        for i, cron in enumerate(
            (
                "*/15 * * * *",
                "0 9-17/2 * * MON-FRI",
                "0,30 0 1,15 jan,Jul sun",
                "5 4 ? * 6",
                "0-59/10 0-23 1-31 1-12 0-6",
                "0 0 * * 1-fri",
                "*/99\t0 * * sun-SAT",
                "@hourly",
                "@midnight",
                "0 2 * * *",
            )
        )
    ),
    Case(
        "time-zone-link",
        SFT,
        {"spec.trigger": {"type": "schedule", "schedule": "@daily", "timeZone": "US/Pacific"}},
        "",
    ),
    Case(
        "data-key-without-extension", SFT, {"spec.dataset.s3": {**S3_DATA, "key": "uploads/2024.01/data"}}, ""
    ),
    Case("data-key-upper-case", SFT, {"spec.dataset.s3": {**S3_DATA, "key": "samples/TRAIN.JSONLINES"}}, ""),
    Case("pref-ftx-with-simpo", DPO, {f"{EXT}.dpo": {"prefLoss": "simpo", "prefFtx": 0.5}}, ""),
    Case(
        "data-url-query",
        SFT,
        {"spec.dataset.s3": DELETE, "spec.dataset.url": "https://data.example.com/get?file=a.txt"},
        "",
    ),
    *VALUE_VARIANTS,
]

# Changes to an existing object that must be refused (CEL transition rules: these have no Python side).
TRANSITIONS: list[Case] = [
    Case(
        "trainer-changed",
        SFT,
        {"spec.trainer": "dpo", "spec.dataset.format": "sharegpt", "spec.validationDataset": DELETE},
        "spec.trainer",
    ),
    Case("base-model-changed", SFT, {"spec.baseModel": {"catalog": "Llama-3.2-1B"}}, "spec.baseModel"),
    Case("output-changed", SFT, {"spec.output": {"privateModel": "other-model"}}, "spec.output"),
    Case(
        "eval-suite-changed",
        LM,
        {"spec.suite": "nejumi-leaderboard3", "spec.tasks": ["jaster"]},
        "spec.suite",
    ),
    Case("eval-model-changed", LM, {"spec.model": {"catalog": "Llama-3.2-1B"}}, "spec.model"),
    Case("eval-parameters-changed", LM, {"spec.parameters.seed": 99}, "spec.parameters"),
    Case("model-storage-moved", PM, {"spec.storage.s3.bucket": "other-models"}, "spec.storage"),
    Case(
        "model-storage-to-pvc",
        PM,
        {"spec.storage": {"pvc": {"claimName": "models", "path": "support-assistant"}}},
        "spec.storage",
    ),
]

# Changes that must still be allowed after creation.
ALLOWED_UPDATES: list[Case] = [
    Case("hyperparameters-changed", SFT, {f"{HP}.epochs": 3}, ""),
    Case("schedule-added", SFT, {"spec.trigger": {"type": "schedule", "schedule": "@weekly"}}, ""),
    Case("eval-description-changed", LM, {"spec.description": "re-labelled"}, ""),
    Case("eval-run-again", LM, {"spec.runToken": "again-1"}, ""),
    Case("model-tags-changed", PM, {"spec.tags": {"other": ["v2"]}}, ""),
]
