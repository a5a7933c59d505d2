"""VLMEvalKit's ChartQA, DocVQA, InfoVQA, OCRBench and MTVQA as adapters over its staged TSVs, scored by
its rules (open-compass/VLMEvalKit `image_vqa.py` / `utils/vqa_eval.py`; the kit is not installable here).

A TSV (`$LMUData/<NAME>.tsv` in VLMEvalKit) has columns index, image (base64), question, answer and
for some sets category; an answer may be a Python list literal of accepted answers. Scores are 0-1
(VLMEvalKit prints them x100; OCRBench's Final Score, the number of hits, is in details):

- ChartQA relaxed accuracy: both numbers (a trailing % divides by 100) -> |pred - gt| / |gt| <= 5 %;
  otherwise case-insensitive equality; best over the accepted answers.
- DocVQA / InfoVQA ANLS: 1 - Levenshtein(lowercased, space-collapsed) / max raw length, best over the
  answers, 0 below 0.5. The _VAL splits are used: the _TEST splits have no answers.
- OCRBench: the answer is a substring of the output (lowercased; Handwritten Mathematical Expression
  Recognition compares with spaces removed instead).
- MTVQA: the answer is a substring of the output after lowercasing and removing periods; per language.
"""

from __future__ import annotations

import ast
import base64
import csv
import io
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaizen_api.evalconfig import EvalRunConfig
from kaizen_api.results import EvalTaskResult
from rapidfuzz.distance import Levenshtein

from kaizen_runner.eval.errors import EvalError
from kaizen_runner.eval.progress import EvalProgressReporter
from kaizen_runner.eval.staged import staged_file, staged_root
from kaizen_runner.eval.standard import SuiteOutcome

TSV_NAMES = {
    "chartqa": "ChartQA_TEST",
    "docvqa": "DocVQA_VAL",
    "infovqa": "InfoVQA_VAL",
    "ocrbench": "OCRBench",
    "mtvqa": "MTVQA_TEST",
}
SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
PROMPT_SUFFIX = {
    "chartqa": SHORT_ANSWER,
    "docvqa": SHORT_ANSWER,
    "infovqa": SHORT_ANSWER,
    "ocrbench": "",
    "mtvqa": "\nAnswer the question using a word or phrase in the language of the question.",
}
HME = "Handwritten Mathematical Expression Recognition"


@dataclass(frozen=True)
class VqaItem:
    index: str
    question: str
    answers: tuple[str, ...]
    category: str
    image_b64: str

    def image(self) -> Any:
        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(self.image_b64))) as img:
            return img.convert("RGB")


def _answers(raw: str) -> tuple[str, ...]:
    text = raw.strip()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
            return tuple(str(v) for v in value)
        except (ValueError, SyntaxError):
            pass
    return (text,)


def _check_image(path: Path, number: int, encoded: str) -> None:
    """A row's image opens (header and checksums, not the pixels), or DataInvalid naming the row: found
    during generation, a bad image would end the run late, and PIL's error would have it retried."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as img:
            img.verify()
    except (ValueError, OSError, SyntaxError) as err:  # binascii.Error; UnidentifiedImageError; PNG chunks
        raise EvalError(
            "DataInvalid", f"{path}: row {number}: image is not a base64 image file ({err})"
        ) from err


def load_items(path: Path, limit: int | None = None) -> list[VqaItem]:
    """The TSV's items (the first `limit`), each checked: its fields present, its image readable."""
    csv.field_size_limit(sys.maxsize)  # base64 images are long fields
    items = []
    with path.open(encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle, delimiter="\t")):
            missing = [k for k in ("index", "question", "answer", "image") if not row.get(k)]
            if missing:
                raise EvalError("DataInvalid", f"{path}: row {number}: {', '.join(missing)} missing")
            _check_image(path, number, row["image"])
            items.append(
                VqaItem(
                    row["index"],
                    row["question"],
                    _answers(row["answer"]),
                    row.get("category") or "",
                    row["image"],
                )
            )
            if limit is not None and len(items) >= limit:
                break
    return items


def _to_float(text: str) -> float | None:
    try:
        return float(text.rstrip("%")) / 100 if text.endswith("%") else float(text)
    except ValueError:
        return None


def relaxed_correctness(target: str, prediction: str, max_relative_change: float = 0.05) -> bool:
    pred, gold = _to_float(prediction.strip()), _to_float(target.strip())
    if pred is not None and gold:
        return abs(pred - gold) / abs(gold) <= max_relative_change
    return prediction.strip().lower() == target.strip().lower()


def anls(answers: tuple[str, ...], prediction: str, threshold: float = 0.5) -> float:
    best = 1.0
    for answer in answers:
        gold = " ".join(answer.strip().lower().split())
        pred = " ".join(prediction.strip().lower().split())
        length = max(len(answer.upper()), len(prediction.upper()))
        best = min(best, 0.0 if length == 0 else Levenshtein.distance(gold, pred) / length)
    similarity = 1 - best
    return similarity if similarity >= threshold else 0.0


def ocrbench_hit(answers: tuple[str, ...], prediction: str, category: str) -> bool:
    for answer in answers:
        if category == HME:
            if answer.strip().replace("\n", " ").replace(" ", "") in prediction.strip().replace(
                "\n", " "
            ).replace(" ", ""):
                return True
        elif answer.lower().strip().replace("\n", " ") in prediction.lower().strip().replace("\n", " "):
            return True
    return False


def mtvqa_hit(answers: tuple[str, ...], prediction: str) -> bool:
    pred = prediction.lower().replace(".", "")
    return any(a.lower().strip().replace(".", "") in pred for a in answers)


def score_items(task: str, items: list[VqaItem], predictions: list[str]) -> EvalTaskResult:
    """The task's metric over the items, with per-category means in details."""
    per_item: list[float] = []
    for item, pred in zip(items, predictions, strict=True):
        if task == "chartqa":
            per_item.append(float(any(relaxed_correctness(a, pred) for a in item.answers)))
        elif task in ("docvqa", "infovqa"):
            per_item.append(anls(item.answers, pred))
        elif task == "ocrbench":
            per_item.append(float(ocrbench_hit(item.answers, pred, item.category)))
        else:
            per_item.append(float(mtvqa_hit(item.answers, pred)))
    metric = {"chartqa": "relaxed_accuracy", "docvqa": "anls", "infovqa": "anls"}.get(task, "accuracy")
    by_category: dict[str, list[float]] = defaultdict(list)
    for item, value in zip(items, per_item, strict=True):
        if item.category:
            by_category[item.category].append(value)
    details = {f"category:{c}": sum(v) / len(v) for c, v in sorted(by_category.items())}
    if task == "ocrbench":
        details["final_score"] = sum(per_item)
    mean = sum(per_item) / len(per_item) if per_item else 0.0
    return EvalTaskResult(task=task, metrics={metric: mean}, samples=len(items), details=details or None)


class _Images(Sequence[list[Any]]):
    """Each item's image, decoded only when its batch is generated (a benchmark's images stay on disk)."""

    def __init__(self, items: list[VqaItem]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return [[item.image()] for item in self.items[key]]
        return [self.items[key].image()]


def run_vlmevalkit(cfg: EvalRunConfig, work_dir: Path, reporter: EvalProgressReporter) -> SuiteOutcome:
    from kaizen_runner.eval.generate import make_generator

    root = staged_root(cfg, work_dir)
    tasks = list(cfg.tasks or [])
    files = {t: staged_file(root, f"{TSV_NAMES[t]}.tsv") for t in tasks}
    loaded = {
        t: load_items(files[t], cfg.limit) for t in tasks
    }  # all read and checked before the model loads
    generator = make_generator(cfg, work_dir)
    outcome = SuiteOutcome([], settings={"anls_threshold": "0.5", "relaxed_accuracy": "5% relative"})
    for task in tasks:
        items = loaded[task]
        prompts = [
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image"},
                        {"type": "text", "text": i.question + PROMPT_SUFFIX[task]},
                    ],
                }
            ]
            for i in items
        ]
        reporter.add_total(len(items), task)
        predictions = generator.generate(prompts, _Images(items), on_batch=reporter.advance)
        outcome.tasks.append(score_items(task, items, predictions))
        outcome.samples[task] = [
            {"index": i.index, "question": i.question, "answers": list(i.answers), "prediction": p}
            for i, p in zip(items, predictions, strict=True)
        ]
    return outcome
