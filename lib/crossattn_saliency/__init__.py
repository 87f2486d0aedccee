"""Cross-attention vs. saliency in speech-to-text models.

A research compendium reproducing Papi et al. (2025), *Cross-Attention is Half
Explanation in Speech-to-Text Models*, on real Whisper models and real speech.

Modules, one concept each: ``config`` (paths, profiles), ``cache`` (atomic,
parameter-keyed results), ``models`` (embedded Whisper models, conversion,
loading), ``data`` (test sets), ``transcribe`` (features, hypotheses),
``metrics`` (WER/BLEU/chrF), ``attention`` (cross-attention), ``saliency``
(SPES on input and encoder output), ``compare`` (reducers, normalization,
correlation), ``reliability`` (split-half reliability, noise ceilings),
``deletion`` (faithfulness), ``plots`` (figures), ``pipeline`` (per-condition
steps the notebooks call).
"""
from .config import get_profile

__version__ = "0.1.0"
__all__ = ["get_profile", "__version__"]
