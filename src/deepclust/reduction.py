"""Manifold reduction shared by the methods and the pipeline search: UMAP with an out-of-sample
placement that needs nothing but arrays, so a saved model reloads and predicts identically.

UMAP (McInnes, Healy & Melville, arXiv 1802.03426) learns a low-dimensional layout of the data's
k-NN graph; clustering that layout rather than the raw embedding is the "local manifold" step of
N2D (McConville et al., ICPR 2020) and of BERTopic. UMAP has no closed-form map for new points:
:func:`place` puts a new sample at the distance-weighted mean of the layout coordinates of its
``n_neighbors`` nearest training points (UMAP's own initialisation for ``transform``, without its
refinement steps).
"""

from __future__ import annotations

import functools
import importlib
import warnings

import numpy as np
import torch

from deepclust.errors import DeepclustError
from deepclust.runtime import keep_torch_threads


#: the last layout computed, keyed by a fingerprint of the data and the settings: the pipeline search
#: and the model it then fits share one UMAP run (the layout is small: n × n_components)
_LAST: dict[str, np.ndarray] = {}


#: up to this many points :func:`umap_layout` hands umap-learn exact neighbour lists from one batched
#: product (2.6 s for 10,000 × 784 on 2 cores). Below 4,096 points umap-learn would find the same
#: exact neighbours through one Python call per pair (4 s for 1,797 digits); above, pynndescent
#: approximates them after compiling its search again in every process (25-45 s for 6,000 MNIST images)
EXACT_KNN_MAX = 20_000


def exact_knn(X: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances (n × ``n_neighbors``, float32) of each row's nearest rows,
    the row itself first at distance 0: the neighbour lists umap-learn computes for small data."""
    from deepclust.engines.neighbors import euclidean_knn

    squared, idx = euclidean_knn(X, n_neighbors - 1)
    n = len(X)
    indices = np.hstack([np.arange(n)[:, None], idx]).astype(np.int64)
    distances = np.hstack([np.zeros((n, 1)), np.sqrt(squared)]).astype(np.float32)
    return indices, distances


@functools.cache
def cache_umap_kernels() -> int:
    """Let numba keep umap-learn's compiled kernels on disk; return how many were switched on.

    umap-learn 0.5 declares its numba kernels without ``cache=True`` (pynndescent's have it), so every
    new process compiles them again: 10-25 s of a 30 s ``deepclust run`` on 2 cores, for 1,797 points.
    numba's own on-disk cache (the one ``cache=True`` uses, invalidated when the source changes) is
    switched on for them before their first call; where numba's internals differ, nothing changes
    but the time.
    """
    try:
        import numba
        from numba.core.caching import NullCache
    except ImportError:
        return 0
    switched = 0
    for name in ("umap.umap_", "umap.layouts", "umap.utils", "umap.distances", "umap.sparse", "umap.spectral"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for kernel in vars(module).values():
            if isinstance(kernel, numba.core.dispatcher.Dispatcher) and isinstance(getattr(kernel, "_cache", None),
                                                                                   NullCache):
                try:
                    kernel.enable_caching()
                    switched += 1
                except Exception:  # noqa: BLE001 - an uncacheable kernel compiles as before
                    continue
    return switched


def umap_layout(X: np.ndarray, *, n_components: int = 10, n_neighbors: int = 15, min_dist: float = 0.0,
                metric: str = "euclidean", random_state: int | None = 0) -> np.ndarray:
    """UMAP coordinates (float32, n × ``n_components``) of the rows of ``X`` (a seeded run is
    remembered, so asking again for the same data and settings costs nothing)."""
    try:
        import umap
    except ImportError as exc:
        raise DeepclustError("the UMAP reduction needs umap-learn: pip install 'deepclust[umap]'") from exc
    from deepclust.encoders.cache import fingerprint_data

    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    if n_neighbors >= len(X):
        raise DeepclustError(f"n_neighbors ({n_neighbors}) must be smaller than the number of samples ({len(X)})")
    key = f"{fingerprint_data(X)}:{n_components}:{n_neighbors}:{min_dist}:{metric}:{random_state}"
    if random_state is not None and key in _LAST:
        return _LAST[key].copy()
    # umap-learn's spectral start needs n > dim + 2 (its own rule for small graph components: n >= 2·dim)
    init = "spectral" if len(X) >= max(2 * n_components, n_components + 3) else "random"
    cache_umap_kernels()
    knn = (*exact_knn(X, int(n_neighbors)), None) if metric == "euclidean" and len(X) < EXACT_KNN_MAX else None
    reducer = umap.UMAP(n_components=int(n_components), n_neighbors=int(n_neighbors), min_dist=float(min_dist),
                        metric=metric, init=init, random_state=random_state,
                        **({"precomputed_knn": knn} if knn is not None else {}))
    with keep_torch_threads(), warnings.catch_warnings():  # numba resets torch's thread count
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)  # seeded: one thread
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)  # no transform: place()
        layout = reducer.fit_transform(X).astype(np.float32)
    _LAST.clear()
    _LAST[key] = layout
    return layout.copy()


def keep_anchors(X: np.ndarray, layout: np.ndarray, max_anchors: int, random_state: int | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(training points, their layout coordinates, their row indices or None for all) kept to place new
    points: all of them, or ``max_anchors`` drawn at random."""
    rng = np.random.default_rng(random_state)
    keep = np.sort(rng.choice(len(X), max_anchors, replace=False)) if len(X) > max_anchors else None
    flat = X.reshape(len(X), -1)
    return (np.ascontiguousarray(flat if keep is None else flat[keep], dtype=np.float32),
            layout if keep is None else layout[keep], keep)


def place(X: np.ndarray, train_X: np.ndarray, train_layout: np.ndarray, n_neighbors: int = 15,
          block: int = 4096) -> np.ndarray:
    """Layout coordinates of new points: the distance-weighted mean over their nearest training points."""
    Z = torch.from_numpy(np.asarray(X, dtype=np.float32).reshape(len(X), -1))
    train = torch.from_numpy(np.asarray(train_X, dtype=np.float32))
    layout = torch.from_numpy(np.asarray(train_layout, dtype=np.float32))
    k = min(int(n_neighbors), len(train))
    out = []
    for start in range(0, len(Z), block):
        z = Z[start:start + block]
        idx = torch.cdist(z, train).topk(k, largest=False).indices
        d = (z.unsqueeze(1) - train[idx]).norm(dim=2)  # exact distances (cdist's matmul form is not 0 at 0)
        w = 1.0 / (d + 1e-6)
        w = w / w.sum(1, keepdim=True)
        out.append((w.unsqueeze(2) * layout[idx]).sum(1))
    return torch.cat(out).numpy() if out else np.zeros((0, layout.shape[1]), np.float32)
