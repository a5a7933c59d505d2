"""Training throughput: `kaizen-runner train` against a bare TRL SFTTrainer script, and the effect of packing.

Both sides train the same tiny local model (built by kaizen_local.tinymodels) on the same
length-skewed ShareGPT sample (../shared/datasets) with identical settings, each in a fresh process,
in the same invocation of this script. Throughput is tokens per second of training: TRL's own
`num_tokens` (non-padding tokens seen) divided by the trainer's `train_runtime` (set-up excluded).

    python bench/train_throughput.py [--records 96] [--max-length 512] [--json results.json]

Four configurations: runner and bare TRL, each without and with packing (BFD, padding-free); each is
run `--repeat` times, interleaved, and the best run counts (CPU timings on a shared machine are noisy,
and a fresh process pays one-off warm-up costs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHAREGPT = (
    ROOT.parent / "shared" / "datasets" / "ai-studio-samples" / "sharegpt" / "sharegpt_chat_train_mini.json"
)

# The settings both sides use (the runner's names and TRL's names for the same things).
SETTINGS = {
    "learning_rate": 1e-4,
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "epochs": 1,
    "lora_rank": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "seed": 42,
    "logging_steps": 10,
}


# Each ratio: tokens/s of the first configuration over tokens/s of the second, from the same invocation.
RATIOS = {
    "runner_vs_trl_unpacked": ("runner_unpacked", "trl_unpacked"),
    "runner_vs_trl_packed": ("runner_packed", "trl_packed"),
    "runner_packed_vs_unpacked": ("runner_packed", "runner_unpacked"),
    "trl_packed_vs_unpacked": ("trl_packed", "trl_unpacked"),
}


def runner_config(base: Path, data: Path, output: Path, max_length: int) -> dict[str, Any]:
    return {
        "runName": "ft_bench_20260101000000",
        "trainer": "sft",
        "baseModel": {"uri": str(base)},
        "baseModelName": "tiny-llama",
        "dataset": {"uri": str(data), "format": "sharegpt"},
        "hyperparameters": {
            "learningRate": SETTINGS["learning_rate"],
            "batchSize": SETTINGS["batch_size"],
            "gradientAccumulationSteps": SETTINGS["gradient_accumulation_steps"],
            "epochs": SETTINGS["epochs"],
            "maxSequenceLength": max_length,
            "checkpointSteps": 100000,
        },
        "extendedHyperparameters": {
            "runtime": {
                "mixedPrecision": "none",
                "disableGradientCheckpointing": True,
                "seed": SETTINGS["seed"],
            },
            "lora": {
                "loraRank": SETTINGS["lora_rank"],
                "loraAlpha": SETTINGS["lora_alpha"],
                "loraDropout": SETTINGS["lora_dropout"],
            },
            "others": {"checkpointStrategy": "no", "loggingSteps": SETTINGS["logging_steps"]},
        },
        "output": {"uri": str(output)},
    }


BARE_TRL = r"""
import json, sys
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

base, data, out, max_length, packing, settings = sys.argv[1:7]
settings = json.loads(settings)
roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
rows = []
for record in json.load(open(data)):
    turns = record.get("conversations") or []
    if turns and all(t.get("from") in roles and t.get("value") for t in turns) and turns[-1]["from"] == "gpt":
        rows.append({"messages": [{"role": roles[t["from"]], "content": t["value"]} for t in turns]})
args = SFTConfig(
    output_dir=out, learning_rate=settings["learning_rate"],
    per_device_train_batch_size=settings["batch_size"],
    gradient_accumulation_steps=settings["gradient_accumulation_steps"], num_train_epochs=settings["epochs"],
    max_length=int(max_length), packing=packing == "1", packing_strategy="bfd", assistant_only_loss=True,
    bf16=False, gradient_checkpointing=False, lr_scheduler_type="cosine", optim="adamw_torch",
    logging_steps=settings["logging_steps"], save_strategy="no", report_to="none", seed=settings["seed"],
    data_seed=settings["seed"],
    use_cpu=True, disable_tqdm=True,
)
trainer = SFTTrainer(
    model=AutoModelForCausalLM.from_pretrained(base), args=args, train_dataset=Dataset.from_list(rows),
    processing_class=AutoTokenizer.from_pretrained(base),
    peft_config=LoraConfig(r=settings["lora_rank"], lora_alpha=settings["lora_alpha"],
                           lora_dropout=settings["lora_dropout"], target_modules="all-linear",
                           task_type="CAUSAL_LM"),
)
output = trainer.train()
tokens = [e["num_tokens"] for e in trainer.state.log_history if "num_tokens" in e][-1]
print("BENCH " + json.dumps({"train_runtime": output.metrics["train_runtime"], "num_tokens": tokens,
                             "steps": trainer.state.global_step, "records": len(rows)}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def run_bare_trl(base: Path, data: Path, work: Path, max_length: int, packing: bool) -> dict[str, Any]:
    started = time.monotonic()
    args = [
        str(base),
        str(data),
        str(work / "trl"),
        str(max_length),
        "1" if packing else "0",
        json.dumps(SETTINGS),
    ]
    done = subprocess.run(
        [sys.executable, "-c", BARE_TRL, *args], env=_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"bare TRL run failed:\n{done.stderr[-4000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("BENCH "))
    result: dict[str, Any] = json.loads(line[len("BENCH ") :])
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def run_runner(base: Path, data: Path, work: Path, max_length: int, packing: bool) -> dict[str, Any]:
    started = time.monotonic()
    output = work / "runner-out"
    config = work / "run.json"
    config.write_text(json.dumps(runner_config(base, data, output, max_length)))
    command = [sys.executable, "-m", "kaizen_runner.cli", "train", "--config", str(config)]
    command += ["--work-dir", str(work / "runner-work"), *(["--packing"] if packing else [])]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"runner failed:\n{done.stderr[-4000:]}")
    report = json.loads((output / "ft_bench_20260101000000" / "training_report.json").read_text())
    tokens = [e["num_tokens"] for e in report["logHistory"] if "num_tokens" in e][-1]
    return {
        "train_runtime": report["trainOutput"]["train_runtime"],
        "num_tokens": tokens,
        "steps": report["globalStep"],
        "records": report["dataReports"]["train"]["usable"],
        "wall_s": round(time.monotonic() - started, 1),
    }


def skewed_sample(target: Path, records: int) -> Path:
    """The first `records` conversations of the sample, as they are (lengths from ~50 to ~40k characters)."""
    rows = json.loads(SHAREGPT.read_text(encoding="utf-8"))[:records]
    target.write_text(json.dumps(rows))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=96)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration; the best counts")
    parser.add_argument("--json", type=Path, help="also write the results here")
    options = parser.parse_args()

    from kaizen_local.tinymodels import build_tiny_causal_lm

    with tempfile.TemporaryDirectory(prefix="kaizen-bench-") as tmp:
        work = Path(tmp)
        base = build_tiny_causal_lm(work / "tiny-llama")
        data = skewed_sample(work / "sharegpt.json", options.records)
        results: dict[str, dict[str, Any]] = {}
        for attempt in range(options.repeat):
            for packing in (False, True):
                label = "packed" if packing else "unpacked"
                for side, run in (("runner", run_runner), ("trl", run_bare_trl)):
                    run_dir = work / f"{side}-{label}-{attempt}"
                    run_dir.mkdir()
                    result = run(base, data, run_dir, options.max_length, packing)
                    result["tokens_per_s"] = round(result["num_tokens"] / result["train_runtime"], 1)
                    print(f"{side:6} {label:8} {json.dumps(result)}", flush=True)
                    best = results.get(f"{side}_{label}")
                    if best is None or result["tokens_per_s"] > best["tokens_per_s"]:
                        results[f"{side}_{label}"] = result

    summary = {
        "settings": {**SETTINGS, "records": options.records, "max_length": options.max_length},
        "repeat": options.repeat,
        "runs": results,
        **{
            name: round(results[measured]["tokens_per_s"] / results[baseline]["tokens_per_s"], 3)
            for name, (measured, baseline) in RATIOS.items()
        },
    }
    print(json.dumps(summary, indent=2))
    if options.json:
        options.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
