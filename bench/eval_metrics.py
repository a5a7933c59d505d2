"""Text-similarity metric throughput: Kaizen's batch scorer vs a naive per-pair loop over the same libraries.

Builds --pairs (prediction, reference) pairs, half English (answers of the shared Alpaca / ShareGPT
samples, each paired with a perturbed copy: words dropped, swapped and replaced) and half Japanese
(sentences assembled from phrases, one to three sentences each, perturbed the same way), then
scores all six metrics both ways in this process:

- kaizen: `kaizen_runner.eval.metrics.score_pairs` (one BLEU statistics pass for corpus and
  sentence scores, tokens cached per text, rapidfuzz LCS for ROUGE-L, one rapidfuzz call for all pairs);
- naive: per pair `sacrebleu` sentence BLEU, `RougeScorer.score` and `fuzz.token_sort_ratio`, then
  `corpus_score` over all pairs, with the same tokenizers.

It checks that every per-sample and aggregate score is identical, and prints pairs/s and the ratio.

    python bench/eval_metrics.py [--pairs 10000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "runner-image"))
SAMPLES = REPO.parent / "shared" / "datasets" / "ai-studio-samples"

from kaizen_runner.eval.metrics import (  # noqa: E402
    ALL_METRICS,
    FUZZY_DEFINITION,
    ROUGE_TYPES,
    make_bleu,
    score_pairs,
)
from kaizen_runner.eval.text import RougeTokenizer, lsum_text  # noqa: E402

_JA_PHRASES = (
    "東京は日本の首都です",
    "今日はとても暑い日でした",
    "この製品は高品質な素材で作られています",
    "会議は午後三時から始まります",
    "新しいモデルの精度が向上しました",
    "データの前処理が必要です",
    "お客様からの問い合わせに回答しました",
    "桜の花が満開になりました",
    "駅までは歩いて十分ほどです",
    "機械学習の評価指標を比較します",
    "ご注文ありがとうございます",
    "明日は雨が降るでしょう",
)


def _english_texts() -> list[str]:
    texts = []
    for name in ("alpaca/alpaca_eval_mini.json", "alpaca/alpaca_test_mini.json"):
        path = SAMPLES / name
        if path.is_file():
            texts += [r["output"] for r in json.loads(path.read_text(encoding="utf-8")) if r.get("output")]
    if not texts:  # without the shared samples: generated sentences
        words = ["the", "model", "reads", "data", "and", "writes", "a", "short", "answer", "to", "it"]
        texts = [" ".join(random.choices(words, k=random.randint(8, 60))) + "." for _ in range(200)]
    return [t[:1500] for t in texts]


def _japanese_text() -> str:
    sentences = random.randint(1, 3)
    return "".join(random.choice(_JA_PHRASES) + random.choice("。。！？") for _ in range(sentences))


def _perturb(text: str, japanese: bool) -> str:
    units = list(text) if japanese else text.split()
    out = []
    for unit in units:
        roll = random.random()
        if roll < 0.1:
            continue
        out.append(random.choice(units) if roll < 0.2 else unit)
    if len(out) > 3 and random.random() < 0.5:
        i = random.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    return ("" if japanese else " ").join(out)


def build_pairs(count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    random.seed(seed)
    english = _english_texts()
    preds, refs = [], []
    for i in range(count):
        japanese = i % 2 == 1
        ref = _japanese_text() if japanese else random.choice(english)
        refs.append(ref)
        preds.append(_perturb(ref, japanese))
    return preds, refs


def naive(preds: list[str], refs: list[str]) -> tuple[dict[str, float], list[dict[str, float]]]:
    """What one would write first: every library called once per pair, then the corpus BLEU."""
    from rapidfuzz import fuzz, utils
    from rouge_score import rouge_scorer

    sentence_bleu = make_bleu("unicode", effective_order=True)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=RougeTokenizer())
    rows = []
    for pred, ref in zip(preds, refs, strict=True):
        row = {"bleu": sentence_bleu.sentence_score(pred, [ref]).score / 100}
        row["fuzzy_match"] = fuzz.token_sort_ratio(pred, ref, processor=utils.default_process) / 100
        scores = scorer.score(ref, pred)
        lsum = scorer.score(lsum_text(ref), lsum_text(pred))
        row.update({t: scores[t].fmeasure for t in ("rouge1", "rouge2", "rougeL")})
        row["rougeLsum"] = lsum["rougeLsum"].fmeasure
        rows.append(row)
    aggregate = {"bleu": make_bleu("unicode", effective_order=False).corpus_score(preds, [refs]).score / 100}
    aggregate.update({m: sum(r[m] for r in rows) / len(rows) for m in ALL_METRICS if m != "bleu"})
    return aggregate, rows


def _timed(fn: Any, repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run(pairs: int, repeat: int) -> dict[str, Any]:
    preds, refs = build_pairs(pairs)
    kaizen_s, scores = _timed(lambda: score_pairs(preds, refs, ALL_METRICS), repeat)
    naive_s, (naive_agg, naive_rows) = _timed(lambda: naive(preds, refs), repeat)
    mismatches = sum(
        1
        for ours, theirs in zip(scores.per_sample, naive_rows, strict=True)
        for m in ALL_METRICS
        if ours[m] != theirs[m]
    ) + sum(1 for m in ALL_METRICS if scores.aggregate[m] != naive_agg[m])
    return {
        "pairs": pairs,
        "kaizen_pairs_s": round(pairs / kaizen_s, 1),
        "naive_pairs_s": round(pairs / naive_s, 1),
        "speed_ratio": round(naive_s / kaizen_s, 2),
        "identical": mismatches == 0,
        "mismatches": mismatches,
        "aggregate": {m: round(v, 6) for m, v in scores.aggregate.items()},
        "bleu_signature": scores.settings["bleu"],
        "fuzzy_match": FUZZY_DEFINITION,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000, help="pairs (half English, half Japanese)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side; the best is kept")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args.pairs, args.repeat)
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        print(f"{'pairs':>7} {'kaizen pairs/s':>15} {'naive pairs/s':>14} {'ratio':>6} identical")
        print(
            f"{result['pairs']:>7} {result['kaizen_pairs_s']:>15} {result['naive_pairs_s']:>14} "
            f"{result['speed_ratio']:>5}x {result['identical']}"
        )
        print("aggregate:", json.dumps(result["aggregate"], ensure_ascii=False))
    if not result["identical"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
