"""Output quality: WER with Whisper's text normalizers, BLEU and chrF (sacrebleu).

:func:`wer` is the package's one word-error-rate implementation; other modules
(e.g. ``deletion.default_wer``, a sentence-level fraction) call it.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence


@lru_cache(maxsize=None)
def normalizer(language: str) -> Callable[[str], str]:
    """Whisper's English normalizer for ``"en"``, its basic one otherwise."""
    from whisper_normalizer.basic import BasicTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer

    if language == "en":
        return EnglishTextNormalizer()
    return BasicTextNormalizer()


def wer(references: Sequence[str], hypotheses: Sequence[str], language: str = "en",
        normalize: bool = True) -> float:
    """Corpus word error rate in percent (errors / reference words x 100).

    Texts are normalized with Whisper's normalizer unless ``normalize=False``;
    pairs whose normalized reference is empty are an error.
    """
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no sentences to score")
    norm = normalizer(language) if normalize else (lambda s: s)
    refs = [norm(r).strip() for r in references]
    hyps = [norm(h).strip() for h in hypotheses]
    empty = [i for i, r in enumerate(refs) if not r]
    if empty:
        raise ValueError(f"empty reference after normalization at positions {empty}")
    return 100.0 * jiwer.wer(refs, hyps)


def bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenization, mixed case)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def chrf(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu defaults)."""
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)
