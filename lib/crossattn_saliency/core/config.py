"""Paths and run profiles: the one place where configuration lives.

Paths
-----
* ``repo_root()``: the compendium checkout (``notebooks/``, ``results/`` ...).
* ``assets_dir()``: derived, downloaded or converted assets (converted models,
  built test sets, unpacked source packages). Defaults to ``<repo>/data``; the
  environment variable ``CROSSATTN_SALIENCY_CACHE`` moves it elsewhere (CI uses
  it so that a clean clone reuses assets built by an earlier run).
* ``results_dir()``: committed tables and figures; ``cache_dir(profile)`` holds
  the large intermediate results of one profile (gitignored).

Profiles
--------
``smoke`` (seconds per notebook, for tests), ``default`` (the embedded offline run
on a 2-core CPU) and ``paper`` (the study's settings, for a GPU). Notebooks take
``profile`` plus overrides as papermill parameters and call :func:`get_profile`.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

ENV_CACHE = "CROSSATTN_SALIENCY_CACHE"
ENV_ROOT = "CROSSATTN_SALIENCY_ROOT"
#: a folder that takes a run's outputs and cache instead of ``results/`` (``make reproduce``)
ENV_RUN = "CROSSATTN_SALIENCY_RUN_DIR"


def repo_root() -> Path:
    """The compendium's root folder (holds ``notebooks/`` and ``results/``)."""
    if os.environ.get(ENV_ROOT):
        return Path(os.environ[ENV_ROOT]).resolve()
    here = Path(__file__).resolve().parents[3]
    if (here / "notebooks").is_dir() or (here / "Makefile").is_file():
        return here
    return Path.cwd().resolve()


def assets_dir() -> Path:
    """Folder for derived assets (models, test sets, unpacked sources)."""
    env = os.environ.get(ENV_CACHE)
    path = Path(env).expanduser().resolve() if env else repo_root() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """Converted ``transformers`` models, one folder per model name."""
    return assets_dir() / "models"


def sets_dir() -> Path:
    """Built test sets (``datasets`` folders), one per set name."""
    return assets_dir() / "sets"


def sources_dir() -> Path:
    """Unpacked source packages the test sets are built from."""
    return assets_dir() / "sources"


def results_dir() -> Path:
    """Committed reference results: ``tables/``, ``figures/``, ``bench/``, notebooks."""
    return repo_root() / "results"


def output_dir(profile: str, kind: str = "") -> Path:
    """Where a profile's tables/figures go: ``results/<kind>`` for the committed
    ``default`` profile, ``results/profiles/<profile>/<kind>`` (gitignored) otherwise,
    so test and paper runs never overwrite the reference results; ``<run dir>/<kind>`` under
    :data:`ENV_RUN` (``make reproduce``: a run compared with the reference afterwards)."""
    if os.environ.get(ENV_RUN):
        base = Path(os.environ[ENV_RUN]).resolve()
    else:
        base = results_dir() if profile == "default" else results_dir() / "profiles" / profile
    path = base / kind if kind else base
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(profile: str) -> Path:
    """Large intermediate results (hypotheses, attention, saliency) of one profile:
    ``results/cache/<profile>``, or ``<run dir>/cache/<profile>`` under :data:`ENV_RUN`."""
    if os.environ.get(ENV_RUN):
        return Path(os.environ[ENV_RUN]).resolve() / "cache" / profile
    return results_dir() / "cache" / profile


def reference_store_dir(profile: str) -> Path | None:
    """The committed, read-only store of a profile's intermediate results
    (``results/store/<profile>``, read by notebooks 05-10 for what the local cache lacks), or
    None where there is none, or under :data:`ENV_RUN` (a run that recomputes everything)."""
    if os.environ.get(ENV_RUN):
        return None
    path = results_dir() / "store" / profile
    return path if path.is_dir() else None


def native_bf16(device: str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA device that supports it, or a
    CPU with AMX-BF16 or AVX512-BF16 (read from ``/proc/cpuinfo`` on Linux)."""
    if str(device).startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def derive_seed(seed: int, *parts: str | int) -> int:
    """A seed for one random draw of a run, derived from the profile's ``seed`` and names
    (utterance id, explanation kind, ...): ``SeedSequence([seed, crc32(part), ...])``.
    Stable across processes and machines (no salted ``hash``); different parts give
    independent streams, so no two maps of a run share their masks by accident."""
    import zlib

    import numpy as np

    words = [int(seed)] + [zlib.crc32(str(p).encode()) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0])


@dataclass(frozen=True)
class Condition:
    """One model x test set x task combination that the study evaluates.

    ``task`` is ``"transcribe"`` (ASR) or ``"translate"`` (speech translation
    into English); ``language`` is the source language code.
    """

    model: str
    dataset: str
    task: str
    language: str

    @property
    def model_label(self) -> str:
        """A file-name-safe model name: embedded names as they are, hub ids with ``/`` as
        ``--`` (``openai--whisper-small``), local folders as ``<folder name>-<hash of the path>``."""
        m = self.model
        if os.path.isabs(m) or m.startswith((".", "~")):
            import hashlib

            return f"{Path(m).name}-{hashlib.sha256(m.encode()).hexdigest()[:8]}"
        return m.replace("/", "--")

    @property
    def name(self) -> str:
        """``<model>__<set>__<asr|st>``, safe as a folder name."""
        kind = "asr" if self.task == "transcribe" else "st"
        return f"{self.model_label}__{self.dataset}__{kind}"

    def matches(self, name: str) -> bool:
        """True for :attr:`name` and for the same name spelled with the model as given
        (``openai/whisper-small__en-real__asr``)."""
        kind = "asr" if self.task == "transcribe" else "st"
        return name in (self.name, f"{self.model}__{self.dataset}__{kind}")


@dataclass(frozen=True)
class Profile:
    """All knobs of one run; notebooks receive ``name`` and overrides."""

    name: str
    #: utterances per test set (``None`` = all)
    set_sizes: Mapping[str, int | None]
    conditions: tuple[Condition, ...]
    seed: int = 0
    #: decoding of hypotheses (the study: beam 5)
    beam_size: int = 5
    #: dtype of the perturbation passes of SPES: "bfloat16", "float32", or "auto" = bfloat16
    #: where the hardware computes it natively (CUDA, or a CPU with AMX / AVX-512 BF16), float32
    #: elsewhere (emulated bf16 was 4-17x slower than float32 on an AVX2-only CPU). bf16 maps
    #: agree with float32 at Pearson >= 0.99 per token (results/bench/).
    dtype: str = "auto"
    #: how the encoder of SM_X's perturbation passes runs (``backends``): "auto" (OpenVINO on a CPU where
    #: it is installed, PyTorch elsewhere), "torch", "inductor" (torch.compile) or "openvino"; a backend
    #: is used only after its maps matched float32 PyTorch's on the same masks (``backends.check``)
    spes_backend: str = "auto"
    #: masks of that check (SM_X of the condition's first explained utterance, float32 PyTorch and the
    #: backend on the same masks; 256 outside the smoke profile, also ``backends.CHECK_PERTURBATIONS``)
    backend_check_perturbations: int = 256
    #: where explanation jobs run (``executor``): "local" (this process) or "ray" (one Ray task per job)
    executor: str = "local"
    #: device of every model use (decoding, attention, saliency, gradients, deletion)
    device: str = "cpu"
    #: dtype of the reference computations: decoding, cross-attention
    model_dtype: str = "float32"
    #: dtype of the deletion test's decoding of masked inputs (and of its intact reference, decoded
    #: the same way): "bfloat16", "float32" or "auto" (as :attr:`dtype`); the deletion AUCs of the
    #: two agree (results/bench/deletion_precision.md)
    deletion_dtype: str = "auto"
    #: explanation kinds to compute (names in ``kinds.REGISTRY``; ``None`` = all registered)
    explanations: tuple[str, ...] | None = None
    #: gradient saliency (captum): dtype, integrated-gradients steps, steps per batch
    gradient_dtype: str = "float32"
    gradient_steps: int = 16
    gradient_batch_size: int = 8
    #: "batched" (one forward per group of integration points shared by all tokens, per-token
    #: gradients from one batched backward) or "captum"; same maps (tests/test_gradients.py)
    gradient_engine: str = "batched"
    #: comparison: reducer of input-grid maps to the 20 ms encoder grid, and per-map normalization
    reducer: str = "max2d"
    #: every reducer of SM_X compared in notebook 07 (rho(CA, reduced SM_X) and the deletion AUC of each)
    reference_reducers: tuple[str, ...] = ("max2d", "max_mel_mean_time", "mean2d")
    normalization: str = "token_z"
    #: a cached result made with other parameters: "recompute" (warn, naming the fields) or "error"
    on_mismatch: str = "recompute"
    #: SPES on the input spectrogram
    spes_perturbations: int = 20000
    spes_batch_size: int = 16
    #: utterances per condition that get saliency maps (``None`` = all)
    saliency_utterances: int | None = None
    #: utterances eligible for saliency maps: duration in [low, high] seconds (``None`` = all); the first
    #: ``saliency_utterances`` eligible ones of each set, in set order, are explained
    saliency_seconds: tuple[float, float] | None = None
    #: at most this many explained utterances per speaker while utterances of other speakers remain
    #: (``None``: no cap; a one-speaker set keeps its first ``saliency_utterances``)
    saliency_per_speaker: int | None = None
    #: conditions (``Condition.name``) that get saliency maps (``None`` = all)
    saliency_conditions: tuple[str, ...] | None = None
    #: SPES on the encoder output
    spes_h_perturbations: int = 20000
    #: deletion: step in percent (the study's 5 % grid, on which its AUCs are reported) and decoding beam
    deletion_step: int = 5
    deletion_beam: int = 5
    deletion_utterances: int | None = None
    #: deletion: points measured besides the step grid, where curves move fastest (at 10 % deleted most
    #: curves were already at 30-98 % WER on the 5 % grid alone)
    deletion_dense: tuple[float, ...] = (0, 1, 2, 5, 10, 15, 20, 30, 50, 75, 100)
    #: deletion: also the insertion curve of every ranking (cells restored in rank order into a fully
    #: deleted input, as SPES's own paper reports)
    deletion_insertion: bool = True
    #: convergence study: utterances per model and largest budget
    convergence_utterances: int = 2
    convergence_budget: int = 20000
    #: bootstrap resamples for confidence intervals
    n_bootstrap: int = 1000
    #: fewer utterances than this: values without intervals, verdicts "not testable at this size"
    min_utterances: int = 8
    #: what set-level intervals over utterances resample first: ``"speaker"`` (a two-stage cluster
    #: bootstrap: speakers with replacement, then clips within each drawn speaker) or ``"clip"``
    #: (clips alone, as if independent). "speaker": the explained clips of a condition come from a
    #: few speakers (en-real: 4, at most ``saliency_per_speaker`` each; a TTS set: one voice), and
    #: clips of one voice are not independent evidence, so resampling clips alone gives intervals
    #: too narrow for the speakers' population; a one-speaker set resamples its clips either way
    #: (the interval then speaks for these clips of that voice)
    bootstrap_clusters: str = "speaker"
    #: verdicts (``verdicts.judge``): a claim's size "holds" only where the whole 95% interval lies inside
    #: the study's reported range widened by this much on each side. 0.05 is the study's own spread
    #: between its models on the one figure it reports per model (best rho(CA, SM_X): base 0.588, small
    #: 0.633, medium 0.621, a spread of 0.045; shared/PAPER.md, "Reported results"), rounded to the two
    #: decimals its tables print: a value closer to the range than that differs from the study by less
    #: than the study's models differ among themselves
    equivalence_margin: float = 0.05
    #: reference noise: random splits of the perturbations for the split-half reliability, score
    #: permutations for its null (and the null of rho), and the corrected reliability below which a
    #: disattenuated value is "not estimable"
    reliability_splits: int = 8
    null_permutations: int = 8
    #: how a reference map's full-budget reliability is estimated (``run.noise.reference_noise``):
    #: "spearman-brown" (split halves stepped up) or "bootstrap" (perturbations resampled within each
    #: level, the reducer applied to every replicate: ``map_noise.bootstrap_reliability``). The
    #: bootstrap, checked on real maps (whisper-tiny.en, the first 3 en-real clips of the default profile, each
    #: map against a repeat on other masks, 1,600 SM_X / 3,000 SM_H perturbations), matches the correlation
    #: of a map with its repeat within 0.04 on all 6 maps (SM_X max2d 0.44 / 0.84 / 0.60 vs 0.43 / 0.83 / 0.61;
    #: SM_H 0.73 / 0.65 / 0.77 vs 0.73 / 0.68 / 0.77), where Spearman-Brown is low for max-pooled SM_X (0.36 /
    #: 0.81 / 0.55); a map's disattenuated agreement with its repeat (1 in truth): SM_X 1.06 (Spearman-Brown
    #: 1.11 [1.05, 1.20]), SM_H 1.03 (0.99 [0.97, 1.03]); whisper-base, 2 clips: SM_X 1.05 (1.11), SM_H 1.05
    #: (1.01). Not the default: it halves Spearman-Brown's bias for max-pooled SM_X but is a little low for
    #: SM_H, where Spearman-Brown is right; the token-bootstrap intervals of notebook 10 and notebook 05's
    #: predictions still use split halves
    reliability_method: str = "spearman-brown"
    reliability_floor: float = 0.3
    #: the budget rule (``reliability.budget_rule``): corrected reliability the median map of each
    #: reference should reach at the profile's budget (SM_X: clear of the floor; SM_H, the cheap
    #: decoder-only reference: 0.9)
    reliability_targets: Mapping[str, float] = field(default_factory=lambda: {"SM_X": 0.5, "SM_H": 0.9})
    #: deletion: seeded draws of each matched random floor (random encoder columns, random SLIC segments)
    deletion_floor_draws: int = 3
    #: disattenuation check (notebook 05): references computed once with ``validation_factor`` x the
    #: budget and ``validation_repeats`` times with the budget, on one utterance per model
    validation_targets: tuple[str, ...] = ("SM_X", "SM_H")
    validation_factor: int = 10
    validation_repeats: int = 3
    #: sensitivity of the reference (notebook 10): SPES settings (``sensitivity.SETTINGS`` names), the
    #: first ``sensitivity_utterances`` explained utterances of each of ``sensitivity_conditions``
    #: (default: the same three en-real utterances for both models; the other settings' maps take
    #: ~15 min per utterance for tiny.en and ~35 min for base on a 2-core CPU, whatever the clip's
    #: length (Whisper's 30 s window); below ``min_utterances`` intervals resample tokens, not
    #: utterances; widen it where compute allows, e.g. ``--set sensitivity_utterances=8``)
    sensitivity_settings: tuple[str, ...] = ("study", "repeat", "p0.1", "p0.2", "p0.3", "occlusion-mean",
                                             "occlusion-0", "levels-one", "levels-coarser", "levels-finer",
                                             "score-prob-drop")
    sensitivity_utterances: int = 3
    sensitivity_conditions: tuple[str, ...] = ("whisper-tiny.en__en-real__asr", "whisper-base__en-real__asr")
    #: alignment heads measured (notebook 11, ``app/heads_study.py``): the sets with word references
    #: used; the set and number of its utterances heads are chosen on (the pool, spread over speakers;
    #: every other utterance is held out); the numbers of pool clips of the selection curve, the SM_H
    #: budgets it rebuilds from the pool's runs (at most ``spes_h_perturbations``) and the random
    #: subsets of the pool per number of clips
    heads_sets: tuple[str, ...] = ("en-real", "en-tts", "it-tts")
    heads_pool_set: str = "en-real"
    heads_pool_size: int = 8
    heads_clip_counts: tuple[int, ...] = (1, 2, 4, 8)
    #: SM_H perturbations per pool clip (float32: ~100 s a clip for tiny.en on a 2-core CPU, whatever its
    #: length: every pass recomputes the decoder's cross-attention over Whisper's 30 s window)
    heads_perturbations_h: int = 1000
    heads_budgets: tuple[int, ...] = (125, 250, 500, 1000)
    heads_repeats: int = 5
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def spes_dtype(self) -> str:
        """:attr:`dtype` resolved on this machine (``"auto"`` -> ``"bfloat16"`` or ``"float32"``)."""
        if self.dtype != "auto":
            return self.dtype
        return "bfloat16" if native_bf16(self.device) else "float32"

    @property
    def deletion_precision(self) -> str:
        """:attr:`deletion_dtype` resolved on this machine (``"auto"`` -> ``"bfloat16"`` or ``"float32"``)."""
        if self.deletion_dtype != "auto":
            return self.deletion_dtype
        return "bfloat16" if native_bf16(self.device) else "float32"

    def explainable(self, seconds: float) -> bool:
        """Whether an utterance of ``seconds`` is eligible for saliency maps (:attr:`saliency_seconds`)."""
        if self.saliency_seconds is None:
            return True
        low, high = self.saliency_seconds
        return low <= seconds <= high

    def with_overrides(self, **overrides: Any) -> "Profile":
        """A copy with some fields replaced; unknown names raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown profile field(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **overrides)

    def saliency_conditions_list(self) -> list[Condition]:
        """The conditions that get saliency maps in this profile."""
        names = self.saliency_conditions
        return [c for c in self.conditions if names is None or any(c.matches(n) for n in names)]

    def conditions_for(self, model: str | None = None, dataset: str | None = None) -> list[Condition]:
        return [c for c in self.conditions
                if (model is None or c.model == model) and (dataset is None or c.dataset == dataset)]


_CONDITIONS = (
    Condition("whisper-tiny.en", "en-real", "transcribe", "en"),
    Condition("whisper-tiny.en", "en-tts", "transcribe", "en"),
    Condition("whisper-base", "en-real", "transcribe", "en"),
    Condition("whisper-base", "en-tts", "transcribe", "en"),
    Condition("whisper-base", "it-tts", "transcribe", "it"),
    Condition("whisper-base", "it-tts", "translate", "it"),
    Condition("whisper-base", "nl-real", "transcribe", "nl"),
    Condition("whisper-base", "nl-real", "translate", "nl"),
    Condition("whisper-base", "cs-real", "transcribe", "cs"),
    Condition("whisper-base", "cs-real", "translate", "cs"),
)

#: the explanation kinds a CPU profile computes: all registered kinds except integrated gradients
#: on the input grid (about an hour per whisper-base utterance on a 2-core CPU; the paper profile,
#: for a GPU, computes every kind); the three model-blind baselines (explain/baselines.py) cost nothing
CPU_KINDS = ("SM_X", "SM_H", "CA", "NormCA", "IxG_X", "IxG_H", "IG_H", *("Diagonal", "Energy", "DiagonalEnergy"))

PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        set_sizes={"en-real": 2, "en-tts": 2, "it-tts": 2, "nl-real": 2, "cs-real": 2},
        conditions=_CONDITIONS,
        beam_size=1,
        spes_perturbations=32,
        spes_batch_size=8,
        # the backend check is float32 SM_X of a 30 s window per mask: at 256 masks it was 340 of notebook
        # 04's 384 s here; 32 masks test the same path (tests/test_integration.py checks at 32 too)
        backend_check_perturbations=32,
        saliency_utterances=1,
        # en-real's 3.0 s clip, not its 25.7 s one (70 tokens: every per-token kind, the deletion decodes
        # and the figures cost several times as much); from 0.5 s, so both en-tts clips (0.9 s, 3.2 s) stay
        # in notebook 11's pool
        saliency_seconds=(0.5, 10.0),
        saliency_conditions=("whisper-tiny.en__en-real__asr", "whisper-base__it-tts__st"),
        spes_h_perturbations=64,
        deletion_step=25,
        deletion_beam=1,
        deletion_utterances=1,
        deletion_dense=(0, 2, 10, 100),
        convergence_utterances=1,
        convergence_budget=64,
        n_bootstrap=100,
        reliability_splits=2,
        null_permutations=2,
        deletion_floor_draws=2,
        validation_targets=("SM_H",),
        validation_factor=2,
        validation_repeats=2,
        sensitivity_settings=("study", "repeat", "p0.2", "occlusion-mean"),
        sensitivity_utterances=1,
        sensitivity_conditions=("whisper-tiny.en__en-real__asr",),
        heads_pool_set="en-tts",  # short clips: seconds of SM_H
        heads_pool_size=2,
        heads_clip_counts=(1, 2),
        heads_perturbations_h=64,
        heads_budgets=(16, 64),
        heads_repeats=2,
        gradient_steps=2,
        gradient_batch_size=4,
        # seconds per notebook: gradients on the encoder grid only (input-grid kinds are
        # exercised on a tiny model in tests/test_pipeline.py)
        explanations=("SM_X", "SM_H", "CA", "NormCA", "IxG_H", "IG_H", "Diagonal", "Energy", "DiagonalEnergy"),
    ),
    "default": Profile(
        name="default",
        set_sizes={"en-real": 24, "en-tts": 16, "it-tts": 16, "nl-real": 12, "cs-real": 12},
        conditions=_CONDITIONS,
        beam_size=5,
        # budgets by the rule in README "Spending the compute": the map noise of a disattenuated rho is a
        # small share of its spread between utterances, so every map gets the smallest budget that lifts
        # its reference's reliability clear of the floor, and the rest of the compute buys utterances
        spes_perturbations=1600,
        spes_batch_size=16,
        saliency_utterances=8,
        saliency_seconds=(1.5, 10.0),
        # en-real: 8 clips of at least 4 speakers (the MFA author's own recordings are most of the set)
        saliency_per_speaker=3,
        # like with like: scale (tiny.en vs base on en-real), real vs synthetic (base en-real vs en-tts),
        # language on synthetic speech (base en-tts vs it-tts), task on the same audio (it-tts ASR vs ST)
        saliency_conditions=("whisper-tiny.en__en-real__asr", "whisper-base__en-real__asr",
                             "whisper-base__en-tts__asr", "whisper-base__it-tts__asr", "whisper-base__it-tts__st"),
        spes_h_perturbations=3000,
        deletion_step=10,
        deletion_beam=1,
        deletion_utterances=8,
        convergence_utterances=1,
        convergence_budget=3200,
        n_bootstrap=1000,
        explanations=CPU_KINDS,
        gradient_steps=8,
        # SM_X at 10 x 1,600 perturbations is about 17 min (tiny.en) and 33 min (base) per utterance on a
        # 2-core AVX-512 BF16 CPU: the CPU default validates SM_H; the paper profile both references
        validation_targets=("SM_H",),
    ),
    "paper": Profile(
        name="paper",
        set_sizes={"en-real": None, "en-tts": None, "it-tts": None, "nl-real": None, "cs-real": None},
        conditions=_CONDITIONS,
        beam_size=5,
        dtype="float32",
        device="cuda",
        spes_perturbations=20000,
        spes_batch_size=128,
        saliency_utterances=None,
        spes_h_perturbations=20000,
        deletion_step=5,
        deletion_beam=5,
        deletion_dtype="float32",
        deletion_utterances=None,
        convergence_utterances=4,
        convergence_budget=20000,
        n_bootstrap=2000,
        reliability_splits=16,
        null_permutations=16,
        deletion_floor_draws=5,
        heads_pool_size=16,
        heads_clip_counts=(1, 2, 4, 8, 16),
        heads_perturbations_h=20000,
        heads_budgets=(1000, 5000, 20000),
    ),
}


def get_profile(name: str = "default", **overrides: Any) -> Profile:
    """The named profile with papermill overrides applied (``None`` values ignored)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if "conditions" in overrides:  # JSON-friendly: [model, dataset, task, language] lists or dicts
        overrides["conditions"] = tuple(
            c if isinstance(c, Condition) else Condition(**c) if isinstance(c, Mapping) else Condition(*c)
            for c in overrides["conditions"])
    for key in ("saliency_conditions", "explanations", "validation_targets", "saliency_seconds"):
        if isinstance(overrides.get(key), list):
            overrides[key] = tuple(overrides[key])
    if isinstance(overrides.get("set_sizes"), Mapping):
        overrides["set_sizes"] = {**PROFILES[name].set_sizes, **overrides["set_sizes"]}
    return PROFILES[name].with_overrides(**overrides) if overrides else PROFILES[name]
