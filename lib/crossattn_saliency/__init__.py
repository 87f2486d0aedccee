"""Cross-attention vs. saliency in speech-to-text models.

A research compendium reproducing Papi et al. (2025), *Cross-Attention is Half
Explanation in Speech-to-Text Models*, on real Whisper models and real speech.

The package is built in wings, lowest first (each may import the ones below it; checked by
``tests/test_layering.py``; the README's "Layout" section shows them): ``core``
(configuration, atomic files, progress), ``evaluate`` (the statistics: numpy only), ``data``
(the test sets), ``models`` (loading and decoding Whisper), ``explain`` (the explanation kinds
and the one result type), ``run`` (the study's steps through the result store), ``present``
(tables, figures, the report) and ``app`` (one clip, benchmarks, the notebook runner). Start
from ``run`` (the study's steps), ``explain.kinds`` (the registry of explanation kinds) and
``explain.explanation`` (the result type).
"""
from .core.config import get_profile

__version__ = "0.1.0"
__all__ = ["get_profile", "__version__"]
