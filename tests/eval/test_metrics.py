"""Text-similarity metrics against hand-computed values, including the Japanese and Vietnamese pairs on
which the libraries' default tokenizers give 0 or false positives."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from kaizen_runner.eval.metrics import MetricError, parse_metrics, score_pairs
from kaizen_runner.eval.text import rouge_tokens, split_sentences
from rouge_score import rouge_scorer

JA_PRED, JA_REF = "東京は日本の首都です。", "大阪は日本の都市です。"


def one(pred: str, ref: str, *metrics: str) -> dict[str, float]:
    return score_pairs([pred], [ref], metrics or None).per_sample[0]


def test_default_tokenizers_fail_on_japanese_where_ours_do_not():
    default = rouge_scorer.RougeScorer(["rouge1"])
    assert default.score(JA_REF, JA_REF)["rouge1"].fmeasure == 0.0  # the trap: identical, scored 0
    assert sacrebleu.corpus_bleu([JA_REF], [[JA_REF]]).score == 0.0
    assert one(JA_REF, JA_REF) == {m: pytest.approx(1.0) for m in parse_metrics(None)}


def test_japanese_pair_by_hand():
    scores = one(JA_PRED, JA_REF)
    # Characters (punctuation dropped): 10 each; common 7 (は日本の都です) -> 0.7; the LCS is the same 7.
    assert scores["rouge1"] == pytest.approx(0.7)
    assert scores["rougeL"] == pytest.approx(0.7)
    # Bigrams: 9 each, common は日 日本 本の です -> 4/9.
    assert scores["rouge2"] == pytest.approx(4 / 9)
    # BLEU tokens keep 。 (11 each): 1-4 gram precisions 8/11, 5/10, 3/9, 1/8; equal lengths, BP 1.
    assert scores["bleu"] == pytest.approx((8 / 11 * 5 / 10 * 3 / 9 * 1 / 8) ** 0.25)
    # token_sort_ratio after default_process (。 removed): Indel similarity 2*7/20.
    assert scores["fuzzy_match"] == pytest.approx(0.7)


def test_mixed_script_false_positive_is_gone():
    default = rouge_scorer.RougeScorer(["rouge1"])
    assert default.score("GPT-4は弱い", "GPT-4は強い")["rouge1"].fmeasure == 1.0  # only gpt, 4 survive
    assert one("GPT-4は強い", "GPT-4は弱い", "rouge1")["rouge1"] == pytest.approx(4 / 5)


def test_vietnamese_and_accented_latin_keep_their_letters():
    # tôi (I) vs tối (evening): the default tokenizer sees "t i" in both and calls them equal.
    default = rouge_scorer.RougeScorer(["rouge1"])
    assert default.score("Tối đi học", "Tôi đi học")["rouge1"].fmeasure == 1.0
    assert one("Tôi đi học", "Tối đi học", "rouge1")["rouge1"] == pytest.approx(2 / 3)
    assert one("Tôi thích học tiếng Việt", "Tôi thích học tiếng Anh", "rouge1")["rouge1"] == pytest.approx(
        0.8
    )
    assert rouge_tokens("Café naïve résumé") == ["café", "naïve", "résumé"]
    # Decomposed (NFD) input is the same text: NFKC composes it.
    assert one("Tie\u0302\u0301ng Vie\u0323\u0302t", "Tiếng Việt", "rouge1")["rouge1"] == 1.0


def test_rouge_lsum_splits_sentences_including_japanese_stops():
    scores = one("the cat sat. the dog ran.", "the dog ran. the cat sat.", "rougeL", "rougeLsum")
    assert scores == {"rougeL": pytest.approx(0.5), "rougeLsum": pytest.approx(1.0)}
    scores = one("猫が座った。犬が走った！", "犬が走った！猫が座った。", "rougeL", "rougeLsum")
    assert scores["rougeLsum"] == pytest.approx(1.0) and scores["rougeL"] < 1.0
    assert split_sentences("pi is 3.14 today. 東京です。大阪？ok") == [
        "pi is 3.14 today.",
        "東京です。",
        "大阪？",
        "ok",
    ]


def test_corpus_bleu_sums_statistics_and_sentence_bleu_uses_effective_order():
    preds, refs = ["the cat sat on the mat", "hello world"], ["the cat is on the mat", "hello there world"]
    scores = score_pairs(preds, refs, ["bleu"])
    assert scores.aggregate["bleu"] == pytest.approx(0.3243, abs=1e-4)  # sacrebleu corpus_bleu: 32.43
    mean_sentence = sum(s["bleu"] for s in scores.per_sample) / 2
    assert mean_sentence == pytest.approx(0.4044, abs=1e-4)  # the mean of sentence BLEU differs: 40.44
    assert scores.settings["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:unicode|smooth:exp")
    assert score_pairs(["hello world"], ["hello world"], ["bleu"]).per_sample[0]["bleu"] == pytest.approx(1.0)


def test_fuzzy_match_is_token_sort_ratio_with_normalisation():
    assert one("new york mets", "mets new york", "fuzzy_match")["fuzzy_match"] == 1.0
    assert one("Hello World!", "hello world", "fuzzy_match")["fuzzy_match"] == 1.0
    # "abcd" vs "abce": Indel distance 2 over 8 characters -> 0.75.
    assert one("abcd", "abce", "fuzzy_match")["fuzzy_match"] == pytest.approx(0.75)


def test_empty_prediction_scores_zero_and_aggregates_are_means():
    scores = score_pairs(["", "same words"], ["some reference", "same words"], ["rouge1", "fuzzy_match"])
    assert scores.per_sample[0] == {"fuzzy_match": 0.0, "rouge1": 0.0}
    assert scores.aggregate == {"rouge1": 0.5, "fuzzy_match": 0.5}
    assert math.isclose(score_pairs([""], ["x"], ["bleu"]).aggregate["bleu"], 0.0)


def test_bad_metric_and_tokenizer_names_are_refused():
    with pytest.raises(MetricError, match="unknown metric rougeX"):
        parse_metrics("bleu,rougeX")
    with pytest.raises(MetricError, match="unknown BLEU tokenizer"):
        score_pairs(["a"], ["a"], ["bleu"], bleu_tokenize="klingon")
    assert parse_metrics("rougeL, bleu") == ("rougeL", "bleu")
