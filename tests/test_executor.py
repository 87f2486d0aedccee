"""Explanation jobs on Ray: a killed worker loses nothing, a rerun recomputes nothing that finished,
and the maps equal those of the local executor (real model, real audio)."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from crossattn_saliency.core import config
from crossattn_saliency import run
from crossattn_saliency.run import executor

pytestmark = pytest.mark.integration

COND = "whisper-tiny.en__en-real__asr"


@pytest.fixture()
def profile(tmp_path, monkeypatch):
    monkeypatch.setenv(config.ENV_ROOT, str(tmp_path / "ray"))
    # the smoke set's 3.0 s utterance (saliency_seconds leaves out its 25.7 s one); two jobs long enough
    # to be killed mid-run: SM_X and SM_H of it
    return config.get_profile("smoke", saliency_conditions=[COND], explanations=["SM_X", "SM_H"],
                              saliency_utterances=1, saliency_seconds=[1.5, 10.0], spes_perturbations=32,
                              spes_h_perturbations=600, dtype="float32", spes_backend="torch", executor="ray")


def _records(profile):
    root = config.cache_dir(profile.name)
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.glob("saliency_*/*/*.npz"))}


def test_two_ray_jobs_survive_a_killed_worker_and_match_the_local_executor(profile, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="the Ray extra is not installed (pip install -e 'lib[ray]')")
    jobs = executor.jobs_for(profile)
    assert [j.kind for j in jobs] == ["SM_X", "SM_H"] and len({j.utt_id for j in jobs}) == 1
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {config.ENV_ROOT: os.environ[config.ENV_ROOT],
                                       config.ENV_CACHE: os.environ.get(config.ENV_CACHE, "")}})
    try:
        result: dict = {}
        runner = threading.Thread(target=lambda: result.update(out=executor.run(profile, jobs, progress=False)))
        runner.start()
        markers = config.cache_dir(profile.name) / "jobs"
        killed = None
        deadline = time.time() + 300
        while killed is None and time.time() < deadline and runner.is_alive():
            running = sorted(markers.rglob("*.running")) if markers.is_dir() else []
            if running:
                time.sleep(2.0)  # mid-run: the perturbation loop has started
                try:
                    killed = json.loads(running[0].read_text())["pid"]
                    os.kill(killed, signal.SIGKILL)
                except (FileNotFoundError, ValueError, ProcessLookupError):
                    killed = None
            time.sleep(0.2)
        runner.join(timeout=900)
        assert killed is not None, "no job was seen running"
        out = result["out"]
        assert sorted(r["job"] for r in out) == sorted(j.key for j in jobs) and all(r["computed"] for r in out)
        assert killed not in {r["pid"] for r in out}  # the killed task was retried on another worker
        first = _records(profile)
        assert len(first) == 2
        # a restarted driver finds every finished job and recomputes none
        again = executor.run(profile, jobs, progress=False)
        assert not any(r["computed"] for r in again) and _records(profile) == first
    finally:
        ray.shutdown()
    # the same jobs on the local executor, in another store: the same maps
    ray_items = run.explain(profile, run.condition(profile, COND), progress=False)
    monkeypatch.setenv(config.ENV_ROOT, str(tmp_path / "local"))
    local = profile.with_overrides(executor="local")
    executor.run(local, jobs, progress=False)
    local_items = run.explain(local, run.condition(local, COND), progress=False)
    for a, b in zip(ray_items, local_items):
        assert a.utt.utt_id == b.utt.utt_id
        for kind in ("SM_X", "SM_H"):  # float32 on 1 (Ray worker) vs 2 threads: the same maps up to rounding
            m = b[kind].maps
            np.testing.assert_allclose(a[kind].maps, m, rtol=1e-3, atol=1e-5 * np.abs(m).max())


def test_an_unknown_executor_is_refused():
    with pytest.raises(ValueError, match="executor='dask' is invalid"):
        executor.run(config.get_profile("smoke"), [], executor="dask")
