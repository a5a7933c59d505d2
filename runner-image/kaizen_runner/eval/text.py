"""Tokenizers and a sentence splitter for the text-similarity metrics, for every script the product serves.

The defaults of the metric libraries are English-only: rouge-score keeps `[a-z0-9]` runs (Japanese
becomes no tokens, so identical strings score 0 and `GPT-4は強い` equals `GPT-4は弱い`; `café` becomes
`caf`), and sacrebleu's `13a` leaves a Japanese sentence as one token (BLEU 0 even for an exact copy).
Here text is NFKC-normalised, each Han/Hiragana/Katakana character is one token (scripts written without
spaces), and elsewhere a token is a run of Unicode letters, marks and digits, so Vietnamese and accented
Latin words stay whole. ROUGE drops punctuation and lowercases, as rouge-score does; BLEU keeps
punctuation as tokens and case, as sacrebleu does.
"""

from __future__ import annotations

import re
import unicodedata

from sacrebleu.tokenizers.tokenizer_base import BaseTokenizer

# Scripts written without spaces between words: one character is one token.
_CJK = (
    "\u2e80-\u2fdf"  # CJK radicals, Kangxi radicals
    "\u3005-\u3007"  # 々 〆 〇
    "\u3040-\u309f"  # Hiragana
    "\u30a0-\u30ff"  # Katakana (incl. ー)
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
# A word: letters, marks and digits that are not CJK (`[^\W...]` is "a word character except CJK");
# combining marks stay inside the word (NFKC composes most Vietnamese letters, not all).
_WORD = rf"(?:[^\W{_CJK}]|[\u0300-\u036f])+"
_ROUGE_TOKEN = re.compile(rf"[{_CJK}]|{_WORD}")
_BLEU_TOKEN = re.compile(rf"[{_CJK}]|{_WORD}|[^\w\s]")
# Sentence ends: CJK full stops end a sentence where they stand; . ! ? only before white space.
_SENTENCE_END = re.compile(r"(?<=[。！？!?.])\s+|(?<=[。！？])(?=\S)|\n+")

UNICODE_TOKENIZER = "unicode"


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def rouge_tokens(text: str) -> list[str]:
    """Lowercased word / CJK-character tokens, punctuation dropped."""
    return _ROUGE_TOKEN.findall(normalize(text).lower())


def bleu_tokens(text: str) -> list[str]:
    """Word / CJK-character / punctuation tokens, case kept."""
    return _BLEU_TOKEN.findall(normalize(text))


def split_sentences(text: str) -> list[str]:
    """Sentences for ROUGE-Lsum: split after 。！？ and after . ! ? followed by space, and on newlines."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def lsum_text(text: str) -> str:
    """One sentence per line, the form rouge-score's rougeLsum reads."""
    return "\n".join(split_sentences(text))


class RougeTokenizer:
    """The tokenizer object rouge-score's RougeScorer takes (`tokenize(text) -> list[str]`)."""

    name = UNICODE_TOKENIZER

    def tokenize(self, text: str) -> list[str]:
        return rouge_tokens(text)


class BleuTokenizer(BaseTokenizer):
    """A sacrebleu tokenizer (it returns the tokens joined by spaces, as sacrebleu's own do)."""

    def signature(self) -> str:
        return UNICODE_TOKENIZER

    def __call__(self, line: str) -> str:
        return " ".join(bleu_tokens(line))
