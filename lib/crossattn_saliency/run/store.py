"""One result store: parameter-keyed, atomic, resumable.

Every expensive result of the pipeline (hypotheses, cross-attention, saliency maps,
gradient maps, deletion curves) goes through :class:`ResultStore`. A record lives at
``<root>/<section>/<key>.<npz|json>`` and carries the parameters that made it
(``meta["params"]`` of an ``.npz``, ``["params"]`` of a ``.json``). Fetching a record:

* missing: computed, written atomically (temporary name, then rename), returned;
* present with the same parameters (and the same identity fields, e.g. the
  explained token ids): read back, nothing is computed (an interrupted run resumes);
* present with other parameters: ``on_mismatch="recompute"`` (default) warns with
  the fields that differ and recomputes; ``on_mismatch="error"`` raises
  :class:`ParamsMismatch` naming them. A mismatch is never silent.

Parameters that cannot change a result (e.g. a batch size) are listed in ``ignore``;
keys added to a section's parameters after records were written can be given their
former implicit value in ``defaults`` so that older records stay valid.

A store may sit on a read-only ``reference`` store of the same layout (the committed
``results/store/<profile>``): a record missing from ``root`` but valid in the reference is read
from there; whatever is computed is written to ``root`` only. Every record read is logged (one
relative path per line in ``<root>/reads.log``), so that :func:`export` can copy exactly what a
set of notebooks read into a new reference store.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from ..core import files

T = TypeVar("T")

ON_MISMATCH = ("recompute", "error")
#: the log of records read, under a store's root
READS_LOG = "reads.log"


class ParamsMismatch(ValueError):
    """A stored record was made with other parameters than the ones asked for."""


def params_diff(stored: Mapping[str, Any], wanted: Mapping[str, Any], ignore: tuple[str, ...] = (),
                defaults: Mapping[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
    """Fields whose stored value differs from the wanted one: ``{name: (stored, wanted)}``.

    Values are compared as JSON (tuples and lists are equal); names in ``ignore``
    are skipped; a name missing from ``stored`` takes its value from ``defaults``.
    """
    norm = lambda v: json.loads(json.dumps(v, sort_keys=True, default=files._json_default))  # noqa: E731
    stored = {**dict(defaults or {}), **dict(stored)}
    out = {}
    for k in sorted(set(stored) | set(wanted)):
        if k in ignore:
            continue
        a, b = stored.get(k, "<missing>"), wanted.get(k, "<missing>")
        if norm(a) != norm(b):
            out[k] = (a, b)
    return out


def _describe(diff: Mapping[str, tuple[Any, Any]], limit: int = 120) -> str:
    def short(v: Any) -> str:
        s = json.dumps(v, default=str)
        return s if len(s) <= limit else s[:limit] + "..."
    return "; ".join(f"{k}: stored {short(a)}, wanted {short(b)}" for k, (a, b) in diff.items())


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a record without loading its arrays (``.npz``) or with its body (``.json``)."""
    path = Path(path)
    if path.suffix == ".json":
        return files.read_json(path)
    with np.load(path, allow_pickle=False) as data:
        return json.loads(bytes(data["__meta__"]).decode()) if "__meta__" in data.files else {}


@dataclass
class ResultStore:
    """Parameter-keyed records under ``root`` (see the module docstring).

    ``ignore``: parameter names that do not change a result; ``on_mismatch``:
    ``"recompute"`` (warn and recompute) or ``"error"``.
    """

    root: Path
    on_mismatch: str = "recompute"
    ignore: tuple[str, ...] = ("batch_size",)
    log: Callable[[str], None] | None = None
    #: the sections records may live in (first part of a section name; ``None``: any), e.g. ``keys.SECTIONS``
    sections: Any = None
    recomputed: list[str] = field(default_factory=list)
    #: records this store computed and wrote (missing or stale ones), in order
    written: list[str] = field(default_factory=list)
    #: a read-only store of the same layout consulted for records missing from ``root``
    reference: Path | None = None
    #: records read from the reference store, in order
    from_reference: list[str] = field(default_factory=list)
    #: append every record read to ``<root>/reads.log`` (for :func:`export`)
    log_reads: bool = True

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.reference = Path(self.reference) if self.reference is not None else None
        if self.on_mismatch not in ON_MISMATCH:
            raise ValueError(f"on_mismatch={self.on_mismatch!r} is invalid: choose one of {list(ON_MISMATCH)}")

    def path(self, section: str, key: str, suffix: str = ".npz") -> Path:
        """``<root>/<section>/<key><suffix>``; ``key`` may hold ``/`` for sub-folders
        (``condition/utterance``); no part may be empty or start with a dot."""
        if self.sections is not None and section.split("/")[0] not in self.sections:
            raise ValueError(f"section {section!r} is not one of the store's sections {sorted(self.sections)}: "
                             "add it to run.keys.SECTIONS")
        parts = [section, *key.split("/")]
        if any(not p or p.startswith(".") for p in parts):
            raise ValueError(f"section {section!r} / key {key!r} cannot name a file: empty part or leading dot")
        return self.root.joinpath(*parts[:-1], parts[-1] + suffix)

    def status(self, path: Path, params: Mapping[str, Any], identity: Mapping[str, Any] | None = None,
               defaults: Mapping[str, Any] | None = None) -> str:
        """``"missing"``, ``"valid"`` or ``"stale"`` (stale warns, or raises under ``on_mismatch="error"``)."""
        if not path.is_file():
            return "missing"
        diff = self.diff(path, params, identity, defaults)
        if not diff:
            return "valid"
        msg = f"{path.relative_to(self.root) if path.is_relative_to(self.root) else path} was made with other " \
              f"parameters ({_describe(diff)})"
        if self.on_mismatch == "error":
            raise ParamsMismatch(msg + ": delete it, use another cache folder, or pass on_mismatch='recompute'")
        warnings.warn(msg + ": recomputing", stacklevel=3)
        if self.log:
            self.log(msg + ": recomputing")
        self.recomputed.append(str(path))
        return "stale"

    def diff(self, path: Path, params: Mapping[str, Any], identity: Mapping[str, Any] | None = None,
             defaults: Mapping[str, Any] | None = None) -> dict[str, tuple[Any, Any]]:
        """The parameters and identity fields in which the record at ``path`` differs from those asked for."""
        meta = read_meta(path)
        diff = params_diff(meta.get("params", {}), params, self.ignore, defaults)
        for k, v in (identity or {}).items():
            diff.update(params_diff({k: meta.get(k, "<missing>")}, {k: v}))
        return diff

    def fetch(self, section: str, key: str, params: Mapping[str, Any], compute: Callable[[], T],
              save: Callable[[T, Path], Any], load: Callable[[Path], T], *, suffix: str = ".npz",
              identity: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None) -> T:
        """The record ``section/key`` made with ``params``: loaded if valid, else computed and saved.

        ``save(obj, path)`` must write the record atomically with ``params`` in its
        metadata (``files.write_npz`` / ``files.write_json`` do); ``identity`` holds
        top-level metadata fields that must match too (e.g. ``token_ids``).
        """
        path = self.path(section, key, suffix)
        if self.status(path, params, identity, defaults) == "valid":
            self._log_read(path)
            return load(path)
        if self.reference is not None and not path.is_file():
            ref = self.reference / path.relative_to(self.root)
            # a stale reference record is simply not used: it is computed into the root
            if ref.is_file() and not self.diff(ref, params, identity, defaults):
                self.from_reference.append(str(ref))
                self._log_read(path)
                return load(ref)
        save(compute(), path)
        self.written.append(str(path))
        self._log_read(path)
        # read back what was written: a fresh result and a stored one are the same numbers
        return load(path)

    def _log_read(self, path: Path) -> None:
        if not self.log_reads:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / READS_LOG, "a") as fh:
            fh.write(path.relative_to(self.root).as_posix() + "\n")

    # -- plain records ---------------------------------------------------------------------

    def fetch_json(self, section: str, key: str, params: Mapping[str, Any],
                   compute: Callable[[], Mapping[str, Any]], **kw: Any) -> dict[str, Any]:
        """A JSON record ``{"params": params, **compute()}``."""
        def save(body: Mapping[str, Any], path: Path) -> None:
            files.write_json(path, {**body, "params": dict(params)})
        return self.fetch(section, key, params, lambda: dict(compute()), save, files.read_json,
                          suffix=".json", **kw)

    def fetch_arrays(self, section: str, key: str, params: Mapping[str, Any],
                     compute: Callable[[], tuple[Mapping[str, np.ndarray], Mapping[str, Any]]],
                     **kw: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """An ``.npz`` record of arrays plus JSON metadata (``meta["params"] = params``)."""
        def save(rec: tuple[Mapping[str, np.ndarray], Mapping[str, Any]], path: Path) -> None:
            arrays, meta = rec
            files.write_npz(path, {**dict(meta), "params": dict(params)}, **dict(arrays))
        return self.fetch(section, key, params, lambda: tuple(compute()), save, files.read_npz, **kw)


def reads(root: str | Path) -> list[str]:
    """The records read through the store at ``root`` (relative paths, first read first, once each)."""
    log = Path(root) / READS_LOG
    if not log.is_file():
        return []
    return list(dict.fromkeys(line.strip() for line in log.read_text().splitlines() if line.strip()))


def export(root: str | Path, dest: str | Path, reference: str | Path | None = None) -> dict[str, int]:
    """Copy every record read through the store at ``root`` (:func:`reads`; from ``root`` or, if
    it was read from there, from ``reference``) into a new store at ``dest`` (replaced as a whole,
    atomically: written beside it, then renamed). Returns bytes per section."""
    import shutil

    root, dest = Path(root), Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    sizes: dict[str, int] = {}
    for rel in reads(root):
        src = root / rel
        if not src.is_file() and reference is not None:
            src = Path(reference) / rel
        if not src.is_file():
            raise FileNotFoundError(f"record {rel} was read but is in neither {root} nor {reference}")
        out = tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out)
        sizes[rel.split("/")[0]] = sizes.get(rel.split("/")[0], 0) + src.stat().st_size
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest) if tmp.exists() else dest.mkdir(parents=True, exist_ok=True)
    if old.exists():
        shutil.rmtree(old)
    return sizes
