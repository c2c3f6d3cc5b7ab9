"""Where a study's independent units run: in this process (default) or as tasks of a Dask cluster.

The units are the ones the runner memoises, each of which writes a cache entry
(``experiments.execution.cache``): the features of one (category, domain), one model fit, the scores of
one (model, category, domain, split).  ``DaskExecutor.precompute`` submits them as a task graph
(fits after their features, scores after their model) to a ``dask.distributed`` cluster, every
task opening the client's prepared run (``PreparedRun``: no data written) in its worker as a
``StudyRun`` and asking it for that one unit; the client
then runs the study as usual and finds every unit in the caches.  So the numbers come from the
same code either way (tested equal to the in-process run, ``tests/test_executors.py``), and a
unit a worker lost is simply computed by the client.

Shared filesystem, several writers: every cache write is a temporary file beside the target
(``mkstemp``: a unique name per writer) renamed over it (``os.replace``, atomic on POSIX
filesystems and NFS v3+), so a reader sees no entry or a complete one.  Features are keyed by
the SHA-256 of the image bytes under a folder keyed by the extractor's configuration and code
fingerprint: two writers of one key write the same content, and the last rename wins.  Models
and scores are keyed by name within one ``--out``, and each key is one task of the graph, so no
two tasks write the same one.  ``GPU`` worker resources: with a CUDA device requested, each
task asks for ``{"GPU": 1}``, so a worker started with ``--resources GPU=1`` runs one at a time.

Threads: Dask's nanny starts workers with ``OMP_NUM_THREADS=1`` (and MKL/OpenBLAS alike), and
the thread count changes how torch, faiss and numba split their float sums (the last bits of
the features, hence of tau: ``golden/*/drift.json``).  Each task therefore sets torch's, faiss's
and numba's threads itself: to ``RunConfig.threads`` (``--threads``) when given, else on a
LocalCluster to the cores divided among its workers, on a remote cluster to the worker's cores.
The numbers equal an in-process run's exactly at the same thread count (``--threads`` there too).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ad_core import timing
from experiments.definition.config import RunConfig
from experiments.execution.plan import ModelKey, ScoreKey
from experiments.execution.prepare import PreparedRun
from experiments.execution.runner import StudyRun

log = logging.getLogger("ad-repro")
_RUNS: dict[str, StudyRun] = {}  # per worker process: the StudyRun of the latest configuration


def run_token(prep: PreparedRun) -> str:
    """A short digest of the prepared run: task keys of several runs on one scheduler never collide."""
    return hashlib.sha256(pickle.dumps(prep)).hexdigest()[:12]


def _faiss():
    """The faiss module where installed (optional: the ``faiss`` kNN backend), else None."""
    import importlib.util

    if importlib.util.find_spec("faiss") is None:
        return None
    import faiss

    return faiss


def _set_threads(threads: int | None) -> tuple[int, int | None, int]:
    """Set torch's, faiss's (where installed) and numba's thread counts (None: this process's cores);
    return the old ones (faiss's None without faiss)."""
    import numba
    import torch

    faiss = _faiss()
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be a positive number of threads, got {threads}")
    old = (torch.get_num_threads(), faiss.omp_get_max_threads() if faiss else None, numba.get_num_threads())
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    if faiss:
        faiss.omp_set_num_threads(n)
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return old


@contextmanager
def thread_count(threads: int | None) -> Iterator[None]:
    """In-process runs with ``--threads``: that many threads inside, the caller's counts restored after."""
    if threads is None:
        yield
        return
    import numba
    import torch

    old = _set_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old[0])
        if old[1] is not None:
            _faiss().omp_set_num_threads(old[1])
        numba.set_num_threads(old[2])


def _worker_run(prep: PreparedRun, threads: int | None) -> StudyRun:
    _set_threads(threads)
    key = run_token(prep)
    if key not in _RUNS:
        _RUNS.clear()  # another run's models and scores are not needed any more
        _RUNS[key] = StudyRun(prep)  # opens the client's prepared run: writes no data
    return _RUNS[key]


def _features(prep: PreparedRun, threads: int | None, category: str, domain: str, splits: list[str]
              ) -> dict[str, Any]:
    timing.reset()
    run = _worker_run(prep, threads)
    before = run.store.n_computed
    run.store.ensure([s for split in splits for s in run.samples(category, domain, split)])
    return {"features_computed": run.store.n_computed - before, "phases": timing.snapshot()}


def _fit(prep: PreparedRun, threads: int | None, key: ModelKey, *_deps: object) -> dict[str, Any]:
    timing.reset()
    _worker_run(prep, threads).fitted(key)
    return {"phases": timing.snapshot()}


def _score(prep: PreparedRun, threads: int | None, key: ScoreKey, *_deps: object) -> dict[str, Any]:
    timing.reset()
    run = _worker_run(prep, threads)
    model_key, category, domain, split = key
    run.scores(run.fitted(model_key), category, domain, split)
    return {"phases": timing.snapshot()}


class LocalExecutor:
    """Every unit in this process, on demand (the runner's own memoisation)."""

    def precompute(self, run: StudyRun) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


CONNECT_TIMEOUT_S = 10  # a scheduler that does not answer in 10 s is refused before anything is written


class DaskExecutor:
    """The units as a Dask task graph on a cluster (``scheduler``: its address; None: a LocalCluster)."""

    def __init__(self, scheduler: str | None = None, workers: int = 2, gpu: bool = False,
                 threads: int | None = None):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:
            raise RuntimeError("--executor dask needs Dask: pip install 'ad-repro[dask]'") from exc
        self._cluster = None
        self.threads = threads  # None on a remote cluster: each worker uses its own cores
        for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny",
                     "distributed.core", "distributed.http.proxy"):  # ~33 INFO lines a run otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        if scheduler is None:
            # the cores shared out: workers x threads above the cores makes OpenMP's and MKL's
            # spinning threads wait for each other (a 2-worker PaDiM fit on 2 cores: 40x slower)
            self.threads = threads or max(1, len(os.sched_getaffinity(0)) // workers)
            # one thread per worker process: torch, numba and faiss use the cores themselves
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         resources={"GPU": 1} if gpu else None, dashboard_address=None)
            self.client = Client(self._cluster)
        else:
            try:  # the address comes from the command line only (never from a recorded configuration)
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                from experiments.definition.config import ConfigError

                raise ConfigError(f"--scheduler {scheduler}: no Dask scheduler answers there within "
                                  f"{CONNECT_TIMEOUT_S} s ({type(exc).__name__}); start it (dask scheduler), check "
                                  "the address, or drop --executor dask to run here") from None
        self.resources = {"GPU": 1} if gpu else None

    def precompute(self, run: StudyRun) -> dict[str, Any]:
        """Submit every unit of the run's plan, wait for all; return what the workers computed."""
        prep, work = run.prep, run.prep.work
        opts = {"resources": self.resources, "pure": False}
        token = run_token(prep)
        feats = {k: self.client.submit(_features, prep, self.threads, *k, splits,
                                       key=f"{token}-features-{k[0]}-{k[1]}", **opts)
                 for k, splits in work.feature_passes(run.categories).items()}
        fits = {}
        for key in sorted(work.models, key=lambda k: -(k.ratio or 0.0)):  # a prefix after its larger coreset
            deps = [feats[(c, key.domain)] for c in key.trains_on(run.categories)]
            larger = work.units[key].fitted_with
            if larger is not None:
                deps.append(fits[larger])  # it saves this model as its prefix
            fits[key] = self.client.submit(_fit, prep, self.threads, key, *deps,
                                           key=f"{token}-fit-{run.model_name(key)}", **opts)
        tasks = [self.client.submit(_score, prep, self.threads, key, fits[key[0]], feats[(key[1], key[2])],
                                    key=f"{token}-score-{run.model_name(key[0])}-{key[1]}-{key[2]}-{key[3]}", **opts)
                 for key in work.scores]
        done = self.client.gather([*feats.values(), *fits.values(), *tasks])
        phases: dict[str, float] = defaultdict(float)
        for stats in done:
            for name, sec in stats["phases"].items():
                phases[name] += sec
        return {"features_computed": sum(s.get("features_computed", 0) for s in done),
                "tasks": len(done), "worker_phases": dict(sorted(phases.items(), key=lambda kv: -kv[1]))}

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(config: RunConfig, device: str) -> LocalExecutor | DaskExecutor:
    """``device``: the run's resolved device (``PreparedRun.device``), so 'auto' on a GPU asks for GPUs."""
    if config.executor == "local":
        return LocalExecutor()
    if config.executor == "dask":
        return DaskExecutor(config.scheduler, config.workers, gpu=device.startswith("cuda"), threads=config.threads)
    raise ValueError(f"unknown executor {config.executor!r}; choose 'local' or 'dask'")
