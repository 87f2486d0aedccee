"""Progress bars that a reader of the terminal sees, and a notebook record does not keep.

Inside a notebook run by ``make reproduce`` / ``make nb`` (papermill), a ``tqdm.auto`` bar
becomes a widget or a stream in the executed notebook: the terminal shows nothing for the
minutes a SPES loop takes. :func:`bar` returns a ``tqdm`` bar that writes to the process's
real standard error when the environment variable :data:`ENV` is ``"terminal"`` (set by
:mod:`..app.notebooks` for the kernel it starts, whose standard error is the terminal's), and a
``tqdm.auto`` bar otherwise (JupyterLab, scripts, tests). The bars show the rate
(perturbations/s, utterances/s), ``i of n`` and the estimated time left.
"""
from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["ENV", "bar", "say", "to_terminal"]

#: ``CROSSATTN_SALIENCY_PROGRESS=terminal`` sends bars to the terminal behind a notebook kernel
ENV = "CROSSATTN_SALIENCY_PROGRESS"


def to_terminal() -> bool:
    """True when bars go to the process's real standard error (see the module docstring)."""
    return os.environ.get(ENV, "") == "terminal"


def bar(iterable: Any = None, **kw: Any) -> Any:
    """A ``tqdm`` progress bar (same arguments as ``tqdm``); see the module docstring."""
    if to_terminal():
        from tqdm.std import tqdm

        kw.setdefault("file", sys.__stderr__)
        kw.setdefault("mininterval", 2.0)
        kw.setdefault("dynamic_ncols", True)
        return tqdm(iterable, **kw)
    from tqdm.auto import tqdm as auto_tqdm

    return auto_tqdm(iterable, **kw)


def say(message: str) -> None:
    """One line of news for the person watching a run (a check, a recomputation): to the terminal
    behind a notebook kernel (never into the executed notebook), to standard error elsewhere."""
    stream = sys.__stderr__ if to_terminal() else sys.stderr
    print(message, file=stream, flush=True)
