"""Where the explanation jobs run: in this process, or as Ray tasks on a cluster.

A job is one explanation kind of one utterance of one condition (:class:`Job`). Every job
writes its result through the profile's result store (atomic: a file appears whole or not
at all), so the executor only decides *where* jobs run:

* ``"local"`` (default): :func:`~.explaining.explain` computes them in order;
* ``"ray"``: :func:`run` submits one Ray task per job (a GPU per task when the profile's
  device is ``cuda``, one CPU otherwise). A task whose record the store holds reads it and
  returns (``computed: False``): a restarted driver recomputes nothing that finished. A killed
  worker's task is retried by Ray (``max_retries``); it left nothing half-written. Ray connects
  to ``RAY_ADDRESS`` when set (an existing cluster), else starts a local instance.

Ray is an optional extra: ``pip install -e "lib[ray]"``. The notebooks call :func:`run`
before collecting the maps with :func:`~.explaining.explain`, which then
reads every record from the store.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Sequence

from ..core import config
from ..core.config import Profile
from ..explain import kinds
from . import keys
from .context import condition, store
from .utterances import context_for, utterances
from .explaining import explanation

__all__ = ["EXECUTORS", "Job", "jobs_for", "run_job", "run"]

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    """One explanation kind of one utterance of one condition."""

    condition: str
    utt_id: str
    kind: str

    @property
    def key(self) -> str:
        return keys.job(self.condition, self.utt_id, self.kind)


def jobs_for(profile: Profile, conditions: Sequence[str] | None = None) -> list[Job]:
    """Every job of the profile: its selected kinds for the saliency utterances of each saliency
    condition (or of ``conditions``)."""
    out = []
    for cond in profile.saliency_conditions_list():
        if conditions is not None and cond.name not in conditions:
            continue
        utts = utterances(profile, cond, profile.saliency_utterances, saliency=True)
        ids = [u.utt_id for u in utts]
        out += [Job(cond.name, uid, k.name) for uid in ids for k in kinds.selected(profile)]
    return out


def _marker(profile: Profile, job: Job) -> Any:
    return store(profile).root / "jobs" / f"{job.key}.running"


_CONTEXTS: dict[tuple[str, str, str], Any] = {}


def run_job(profile: Profile, job: Job) -> dict[str, Any]:
    """Compute one job through the store (or load it); returns what was done. While it runs,
    ``<store>/jobs/<job>.running`` names the process (host and pid) that runs it. Contexts, so
    the prepared models, are kept per process across jobs of the same condition."""
    cond = condition(profile, job.condition)
    key = (json.dumps(dataclasses.asdict(profile), sort_keys=True, default=str), str(config.cache_dir(profile.name)),
           job.condition)
    if key not in _CONTEXTS:
        _CONTEXTS.clear()  # one condition's models at a time per process
        _CONTEXTS[key] = (context_for(profile, cond),
                          {u.utt_id: u for u in utterances(profile, cond, profile.saliency_utterances,
                                                                     saliency=True)})
    ctx, utts = _CONTEXTS[key]
    if job.utt_id not in utts:
        raise KeyError(f"{job.utt_id} is not a saliency utterance of {job.condition} in profile {profile.name}")
    marker = _marker(profile, job)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}))
    t0 = time.perf_counter()
    written = len(ctx.store.written)
    try:
        e = explanation(ctx, kinds.get(job.kind), utts[job.utt_id])
    finally:
        marker.unlink(missing_ok=True)
    return {"job": job.key, "tokens": e.n_tokens, "seconds": time.perf_counter() - t0, "pid": os.getpid(),
            "computed": len(ctx.store.written) > written}


def run(profile: Profile, jobs: Sequence[Job] | None = None, executor: str | None = None,
        progress: bool = True, max_retries: int = 3) -> list[dict[str, Any]]:
    """Run ``jobs`` (default: :func:`jobs_for` the profile) on ``executor`` (default:
    ``profile.executor``). Local: in this process, in order. Ray: one task per pending job."""
    from ..core.progress import bar, say

    executor = executor or profile.executor
    if executor not in EXECUTORS:
        raise ValueError(f"executor={executor!r} is invalid: choose one of {list(EXECUTORS)}")
    jobs = list(jobs_for(profile) if jobs is None else jobs)
    if executor == "local":
        return [run_job(profile, j) for j in bar(jobs, desc=f"jobs {profile.name}", unit="job", disable=not progress)]
    try:
        import ray
    except ImportError as exc:
        raise ImportError("executor='ray' needs Ray: pip install -e \"lib[ray]\" (or pip install ray)") from exc
    if not jobs:
        return []
    if not ray.is_initialized():
        env = {k: os.environ[k] for k in (config.ENV_CACHE, config.ENV_ROOT) if k in os.environ}
        env.setdefault(config.ENV_ROOT, str(config.repo_root()))
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, runtime_env={"env_vars": env},
                 include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    gpu = 1 if str(profile.device).startswith("cuda") else 0
    task = ray.remote(num_cpus=1, num_gpus=gpu, max_retries=max_retries, retry_exceptions=False)(run_job)
    refs = {task.remote(profile, j): j for j in jobs}
    out = []
    with bar(total=len(refs), desc=f"ray jobs {profile.name}", unit="job", disable=not progress) as b:
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            out.append(ray.get(done[0]))
            b.update()
    say(f"{sum(r['computed'] for r in out)} of {len(out)} jobs computed on Ray, the others read from the store")
    return out
