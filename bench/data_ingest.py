"""Data ingest benchmark: validate+convert throughput and peak memory vs `datasets.load_dataset("json")`.

Builds an Alpaca and a ShareGPT JSON array of about --size-mb each in a temporary folder (records
repeated from ../shared/datasets/ when present, generated otherwise), then measures, each in a
fresh process so peak RSS (ru_maxrss) belongs to that work alone:

- kaizen: `load_records` (streaming validation pass) + `to_trl` over every usable record;
- datasets: `datasets.load_dataset("json", data_files=FILE, split="train")` with an empty cache.

Memory is the peak RSS growth during the work alone: after its imports each worker resets the
kernel's peak-RSS mark (/proc/self/clear_refs) and reads VmHWM at the end, so interpreter and
library footprints do not blur the comparison (absolute peaks are in the --json output).

    python bench/data_ingest.py [--size-mb 100] [--formats alpaca sharegpt] [--repeat 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "datasets" / "ai-studio-samples"
SOURCES = {
    "alpaca": SAMPLES / "alpaca" / "alpaca_train_mini.json",
    "sharegpt": SAMPLES / "sharegpt" / "sharegpt_chat_train_mini.json",
}
TASKS = {"alpaca": "sft", "sharegpt": "sft"}
MB = 1_000_000


def _generated(fmt: str, i: int) -> dict[str, Any]:
    words = " ".join(random.choice(("data", "model", "token", "layer", "batch", "loss")) for _ in range(120))
    if fmt == "alpaca":
        return {"instruction": f"Question {i}: {words}", "input": "", "output": words}
    turns = [{"from": "human" if t % 2 == 0 else "gpt", "value": f"{t}: {words}"} for t in range(4)]
    return {"conversations": turns}


def build(fmt: str, path: Path, size_mb: float) -> int:
    """Write a JSON array of about `size_mb` MB; returns its record count."""
    source = SOURCES[fmt]
    records = json.loads(source.read_text(encoding="utf-8")) if source.is_file() else None
    target, written, count = int(size_mb * MB), 1, 0
    with open(path, "w", encoding="utf-8") as out:
        out.write("[")
        while written < target:
            record = records[count % len(records)] if records else _generated(fmt, count)
            chunk = ("," if count else "") + "\n" + json.dumps(record, ensure_ascii=False)
            out.write(chunk)
            written += len(chunk.encode())
            count += 1
        out.write("\n]\n")
    return count


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> int:
    """Start peak tracking now (Linux: reset VmHWM); returns the RSS the work starts from, in KiB."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return _status_kb("VmRSS")
    except OSError:  # no /proc: the peak then includes the imports
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_kb() -> int:
    try:
        return _status_kb("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(engine: str, fmt: str, path: Path, cache: Path) -> dict[str, Any]:
    """Runs in its own process: one engine over one file."""
    if engine == "kaizen":
        from kaizen_runner.data import load_records, to_trl

        baseline = _reset_peak()
        start = time.perf_counter()
        with load_records(path, fmt) as result:
            rows = sum(1 for _ in to_trl(result.records, fmt, TASKS[fmt]))  # type: ignore[arg-type]
    else:
        import datasets

        datasets.disable_progress_bars()
        baseline = _reset_peak()
        start = time.perf_counter()
        rows = datasets.load_dataset(
            "json", data_files=str(path), split="train", cache_dir=str(cache)
        ).num_rows
    seconds = time.perf_counter() - start
    peak = _peak_kb()
    return {
        "rows": rows,
        "seconds": seconds,
        "peak_rss_mb": peak / 1024,
        "growth_mb": (peak - baseline) / 1024,
    }


def measure(engine: str, fmt: str, path: Path, cache: Path) -> dict[str, Any]:
    shutil.rmtree(cache, ignore_errors=True)  # datasets must not find a cached copy
    flags = {"--worker": engine, "--format": fmt, "--file": str(path), "--cache": str(cache)}
    command = [sys.executable, __file__, *[item for pair in flags.items() for item in pair]]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{engine} on {path.name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def best_of(repeat: int, engine: str, fmt: str, path: Path, cache: Path) -> dict[str, Any]:
    """The fastest of `repeat` runs (a shared machine only ever slows a run down), with the largest peak."""
    runs = [measure(engine, fmt, path, cache) for _ in range(repeat)]
    fastest = min(runs, key=lambda run: run["seconds"])
    return {**fastest, "growth_mb": max(run["growth_mb"] for run in runs)}


def run(size_mb: float, formats: list[str], repeat: int) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="kaizen-bench-") as tmp:
        for fmt in formats:
            path = Path(tmp) / f"{fmt}.json"
            records = build(fmt, path, size_mb)
            file_mb = path.stat().st_size / MB
            kaizen = best_of(repeat, "kaizen", fmt, path, Path(tmp) / "cache")
            hf = best_of(repeat, "datasets", fmt, path, Path(tmp) / "cache")
            results.append(
                {
                    "format": fmt,
                    "file_mb": round(file_mb, 1),
                    "records": records,
                    "kaizen_usable_rows": kaizen["rows"],
                    "kaizen_mb_s": round(file_mb / kaizen["seconds"], 2),
                    "datasets_mb_s": round(file_mb / hf["seconds"], 2),
                    "speed_ratio": round(hf["seconds"] / kaizen["seconds"], 2),
                    "kaizen_peak_growth_mb": round(kaizen["growth_mb"], 1),
                    "datasets_peak_growth_mb": round(hf["growth_mb"], 1),
                    "memory_ratio": round(kaizen["growth_mb"] / max(hf["growth_mb"], 0.1), 3),
                    "kaizen_peak_rss_mb": round(kaizen["peak_rss_mb"], 1),
                    "datasets_peak_rss_mb": round(hf["peak_rss_mb"], 1),
                }
            )
    return results


def print_table(results: list[dict[str, Any]]) -> None:
    print(
        "speed_ratio = kaizen MB/s ÷ datasets MB/s; memory_ratio = kaizen peak growth ÷ datasets peak growth"
    )
    print(
        f"{'format':9} {'MB':>6} {'kaizen MB/s':>12} {'datasets MB/s':>14} {'speed':>6} "
        f"{'kaizen +MB':>11} {'datasets +MB':>13} {'memory':>7}"
    )
    for r in results:
        print(
            f"{r['format']:9} {r['file_mb']:>6} {r['kaizen_mb_s']:>12} {r['datasets_mb_s']:>14} "
            f"{r['speed_ratio']:>6} {r['kaizen_peak_growth_mb']:>11} {r['datasets_peak_growth_mb']:>13} "
            f"{r['memory_ratio']:>7}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size-mb", type=float, default=100.0, help="approximate size of each generated file"
    )
    parser.add_argument("--formats", nargs="+", choices=sorted(SOURCES), default=sorted(SOURCES))
    parser.add_argument("--repeat", type=int, default=1, help="runs per engine; the fastest counts")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", choices=("kaizen", "datasets"), help=argparse.SUPPRESS)
    parser.add_argument("--format", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.format, args.file, args.cache)))
        return
    results = run(args.size_mb, args.formats, args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)


if __name__ == "__main__":
    main()
