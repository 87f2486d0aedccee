"""Cross-attention vs. saliency in speech-to-text models.

A research compendium reproducing Papi et al. (2025), *Cross-Attention is Half
Explanation in Speech-to-Text Models*, on real Whisper models and real speech.

The package's modules, one concept each and in layering order, are listed in the
README's "Layout" section (checked by ``tests/test_layering.py``). Start from
``pipeline`` (the study's steps), ``kinds`` (the registry of explanation kinds) and
``explanations`` (the explanation model).
"""
from .core.config import get_profile

__version__ = "0.1.0"
__all__ = ["get_profile", "__version__"]
