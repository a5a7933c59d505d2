"""BLEU, ROUGE-1/2/L/Lsum and Fuzzy Match between outputs and references, per sample and in aggregate.

Scores come from the field's libraries and are identical to calling them pair by pair
(`bench/eval_metrics.py` checks that, and the speed): sacrebleu's BLEU, rouge-score's n-gram and
summary-level LCS scoring, rapidfuzz's token-sort ratio. What is done once instead of per pair:
- BLEU: one pass of sacrebleu's segment statistics gives both the corpus score (summed statistics)
  and each sentence score (the same statistics with effective order), instead of tokenising twice;
- ROUGE: each distinct text is tokenised once for every ROUGE type; ROUGE-L's LCS length comes from
  rapidfuzz's C++ LCS (the same number rouge-score's Python table gives); ROUGE-Lsum of two
  one-sentence texts equals ROUGE-L, so only multi-sentence pairs run rouge-score's summary LCS;
- Fuzzy Match: rapidfuzz scores all pairs in one native call.

Every score is on a 0-1 scale (BLEU and Fuzzy Match divided by 100) so thresholds read alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy
from rapidfuzz import fuzz, process, utils
from rapidfuzz.distance import LCSseq
from rouge_score import rouge_scorer, scoring
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.utils import sum_of_lists

from kaizen_runner.eval.text import UNICODE_TOKENIZER, BleuTokenizer, lsum_text, rouge_tokens

ALL_METRICS = ("bleu", "fuzzy_match", "rouge1", "rouge2", "rougeL", "rougeLsum")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
ROUGE_DEFINITION = f"rouge-score F-measure, tokenizer {UNICODE_TOKENIZER}, Lsum sentences split on .!?。！？"
FUZZY_DEFINITION = "rapidfuzz.fuzz.token_sort_ratio(prediction, reference, processor=default_process)/100"


class MetricError(ValueError):
    """An unknown metric or tokenizer name (a configuration error)."""


def parse_metrics(names: Sequence[str] | str | None) -> tuple[str, ...]:
    """Metric names from a list or a comma-separated string; all when empty."""
    if names is None:
        return ALL_METRICS
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    unknown = [n for n in items if n not in ALL_METRICS]
    if unknown:
        raise MetricError(f"unknown metric {', '.join(unknown)}; choose from {', '.join(ALL_METRICS)}")
    return tuple(dict.fromkeys(items)) or ALL_METRICS


def make_bleu(tokenize: str, *, effective_order: bool) -> BLEU:
    """sacrebleu's BLEU with `tokenize` (our `unicode` tokenizer, or one of sacrebleu's names)."""
    if tokenize == UNICODE_TOKENIZER:
        bleu = BLEU(tokenize="none", effective_order=effective_order)
        bleu.tokenizer = BleuTokenizer()
        bleu.tokenizer_signature = UNICODE_TOKENIZER
        return bleu
    if tokenize not in BLEU.TOKENIZERS:
        choices = ", ".join([UNICODE_TOKENIZER, *BLEU.TOKENIZERS])
        raise MetricError(f"unknown BLEU tokenizer {tokenize!r}; choose from {choices}")
    try:
        return BLEU(tokenize=tokenize, effective_order=effective_order)
    except (ImportError, RuntimeError) as err:  # ja-mecab / ko-mecab / spm without their extras
        raise MetricError(f"BLEU tokenizer {tokenize}: {err}") from err


@dataclass
class Scores:
    """Aggregates (corpus BLEU, means of the rest), per-sample scores, and how they were computed."""

    aggregate: dict[str, float]
    per_sample: list[dict[str, float]]
    settings: dict[str, str] = field(default_factory=dict)


def score_pairs(
    predictions: Sequence[str],
    references: Sequence[str],
    metrics: Sequence[str] | None = None,
    *,
    bleu_tokenize: str = UNICODE_TOKENIZER,
) -> Scores:
    """Score each prediction against its reference."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    chosen = parse_metrics(metrics)
    preds = [p or "" for p in predictions]
    refs = [r or "" for r in references]
    per_sample: list[dict[str, float]] = [{} for _ in preds]
    aggregate: dict[str, float] = {}
    settings: dict[str, str] = {}
    if "bleu" in chosen:
        aggregate["bleu"], settings["bleu"] = _bleu(preds, refs, per_sample, bleu_tokenize)
    if "fuzzy_match" in chosen:
        aggregate["fuzzy_match"] = _fuzzy(preds, refs, per_sample)
        settings["fuzzy_match"] = FUZZY_DEFINITION
    rouge = [m for m in ROUGE_TYPES if m in chosen]
    if rouge:
        aggregate.update(_rouge(preds, refs, per_sample, rouge))
        settings["rouge"] = ROUGE_DEFINITION
    return Scores({m: aggregate[m] for m in chosen}, per_sample, settings)


def _bleu(preds: list[str], refs: list[str], out: list[dict[str, float]], tokenize: str) -> tuple[float, str]:
    corpus = make_bleu(tokenize, effective_order=False)
    sentence = make_bleu(tokenize, effective_order=True)
    stats = corpus._extract_corpus_statistics(preds, [refs])
    for row, stat in zip(out, stats, strict=True):
        row["bleu"] = sentence._compute_score_from_stats(stat).score / 100
    total = corpus._compute_score_from_stats(sum_of_lists(stats)).score / 100 if stats else 0.0
    return total, str(corpus.get_signature())


def _fuzzy(preds: list[str], refs: list[str], out: list[dict[str, float]]) -> float:
    if not preds:
        return 0.0
    ratios = process.cpdist(
        preds,
        refs,
        scorer=fuzz.token_sort_ratio,
        processor=utils.default_process,
        dtype=numpy.float64,  # the scorer's own precision (the default is float32)
        workers=-1,
    )
    for row, ratio in zip(out, ratios.tolist(), strict=True):
        row["fuzzy_match"] = ratio / 100
    return _mean([row["fuzzy_match"] for row in out])


class _Texts:
    """Tokens, n-grams and Lsum sentences of each distinct text, computed once."""

    def __init__(self) -> None:
        self.tokens: dict[str, list[str]] = {}
        self.ngrams: dict[tuple[str, int], Counter[Any]] = {}
        self.sentences: dict[str, list[list[str]]] = {}

    def tok(self, text: str) -> list[str]:
        if text not in self.tokens:
            self.tokens[text] = rouge_tokens(text)
        return self.tokens[text]

    def grams(self, text: str, n: int) -> Counter[Any]:
        key = (text, n)
        if key not in self.ngrams:
            self.ngrams[key] = rouge_scorer._create_ngrams(self.tok(text), n)
        return self.ngrams[key]

    def sents(self, text: str) -> list[list[str]]:
        if text not in self.sentences:
            lines = [s for s in lsum_text(text).split("\n") if len(s)]
            self.sentences[text] = [self.tok(s) for s in lines]
        return self.sentences[text]


def _lcs_score(target: list[str], prediction: list[str]) -> float:
    """rouge-score's `_score_lcs` F-measure, with the LCS length from rapidfuzz."""
    if not target or not prediction:
        return 0.0
    lcs = LCSseq.similarity(target, prediction)
    return float(scoring.fmeasure(lcs / len(prediction), lcs / len(target)))


def _rouge(
    preds: list[str], refs: list[str], out: list[dict[str, float]], types: list[str]
) -> dict[str, float]:
    texts = _Texts()
    for row, pred, ref in zip(out, preds, refs, strict=True):
        for rouge_type in types:
            if rouge_type == "rougeL":
                row[rouge_type] = _lcs_score(texts.tok(ref), texts.tok(pred))
            elif rouge_type == "rougeLsum":
                ref_s, pred_s = texts.sents(ref), texts.sents(pred)
                if len(ref_s) == 1 and len(pred_s) == 1:
                    row[rouge_type] = _lcs_score(ref_s[0], pred_s[0])
                else:
                    row[rouge_type] = rouge_scorer._summary_level_lcs(ref_s, pred_s).fmeasure
            else:
                n = int(rouge_type[5:])
                score = rouge_scorer._score_ngrams(texts.grams(ref, n), texts.grams(pred, n))
                row[rouge_type] = score.fmeasure
    return {t: _mean([row[t] for row in out]) for t in types}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
