"""k nearest neighbours, batched: by cosine similarity on the device (SCAN's mining step), and by
Euclidean distance (:func:`euclidean_knn`: UMAP's exact neighbour lists, AC-PIC's graph).

torch: rows are L2-normalised, similarities computed one block of queries at a time with a
matrix product and reduced with ``topk`` (never an n × n matrix). On a CPU with bfloat16
instructions the blocks are bfloat16 products and the ``k + RERANK_MARGIN`` best candidates of
each row are re-scored in float32, so the result is float32's; elsewhere on the CPU faiss (an exact
``IndexFlatIP``), when installed, does the search for large n.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from deepclust.errors import DeepclustError
from deepclust.training import native_cpu_bf16

#: elements (queries × n) of one similarity block: 16 MiB of float32 on the CPU (a block stays in cache
#: between the product and ``topk``, which read it; 64 MiB blocks were 1.2–1.4 × slower), 1 GiB on a GPU
_BLOCK_ELEMS = {"cpu": 1 << 22, "cuda": 1 << 28}
#: from this many points on, faiss (when installed) does the search on a CPU without bfloat16 instructions:
#: its exact search was 1.2–1.8 × faster than torch's float32 product + topk from n = 3,000 (MiniLM
#: vectors, one thread, AMD EPYC; level at 1,000). On an Intel Xeon with AMX it was 3.5 × slower than
#: torch's float32 path and 5.5 × slower than the bfloat16 one (BANKING77, one thread: 3.6, 1.0, 0.65 s)
FAISS_MIN_N = 3_000
#: bfloat16 similarities (8 bits of mantissa: errors up to ~0.004 on a cosine) choose this many candidates
#: beyond the k a row needs, re-scored in float32: 99.99 % of BANKING77's neighbour sets equal float32's
RERANK_MARGIN = 10
#: from this many rows on, :func:`euclidean_knn` re-scores float32 candidates (below, float64 products
#: throughout take under a second, and small data with many equal distances, such as digits' integer pixels,
#: keeps the lists it always had)
EUCLIDEAN_RERANK_MIN_N = 4_096


def _faiss():
    try:
        import faiss  # noqa: PLC0415
    except ImportError:
        return None
    return faiss


@torch.no_grad()
def cosine_knn(X: torch.Tensor | np.ndarray, k: int = 20, *, backend: str = "auto",
               device: torch.device | str | None = None) -> torch.Tensor:
    """Indices (n × k) of the ``k`` most cosine-similar other points of every row of ``X``, most
    similar first (a point is never its own neighbour). ``backend``: ``"torch"``, ``"faiss"`` or
    ``"auto"`` (torch on a GPU and on a CPU with bfloat16 instructions, where its bfloat16 products
    re-ranked in float32 are fastest; elsewhere faiss for n ≥ ``FAISS_MIN_N`` when installed)."""
    Xt = torch.as_tensor(X)
    if device is not None:
        Xt = Xt.to(device)
    n = Xt.shape[0]
    k = int(k)
    if not 1 <= k < n:
        raise DeepclustError(f"the number of neighbours must be between 1 and n_samples - 1 = {n - 1}, got {k}")
    if backend not in ("auto", "torch", "faiss"):
        raise DeepclustError(f"backend must be 'auto', 'torch' or 'faiss', got {backend!r}")
    Xn = F.normalize(Xt.reshape(n, -1).float(), dim=1)
    faiss = _faiss() if backend != "torch" else None
    if backend == "faiss" and faiss is None:
        raise DeepclustError("backend='faiss' needs the faiss package: pip install faiss-cpu")
    cpu = Xn.device.type == "cpu"
    bf16 = cpu and native_cpu_bf16()
    if faiss is not None and (backend == "faiss" or (cpu and not bf16 and n >= FAISS_MIN_N)):
        xs = np.ascontiguousarray(Xn.cpu().numpy())
        index = faiss.IndexFlatIP(xs.shape[1])
        index.add(xs)
        _, idx = index.search(xs, k + 1)
        return _drop_self(torch.from_numpy(idx).to(Xt.device), k)
    rows = max(64, _BLOCK_ELEMS.get(Xn.device.type, 1 << 22) // n)
    candidates = min(n - 1, k + RERANK_MARGIN) if bf16 else k
    Xp = Xn.bfloat16() if bf16 else Xn
    out = torch.empty((n, k), dtype=torch.int64, device=Xn.device)
    for start in range(0, n, rows):
        sim = Xp[start:start + rows] @ Xp.T
        sim[torch.arange(sim.shape[0], device=sim.device), torch.arange(start, start + sim.shape[0],
                                                                          device=sim.device)] = -float("inf")
        best = sim.topk(candidates, dim=1).indices
        if candidates > k:  # re-score the candidates in float32
            exact = torch.einsum("rd,rcd->rc", Xn[start:start + rows], Xn[best])
            best = best.gather(1, exact.topk(k, dim=1).indices)
        out[start:start + rows] = best
    return out


def _drop_self(idx: torch.Tensor, k: int) -> torch.Tensor:
    """faiss returns k + 1 hits including (usually first) the query itself: remove it, or the last
    hit when duplicates pushed the query out of the list."""
    n = idx.shape[0]
    is_self = idx == torch.arange(n, device=idx.device)[:, None]
    keep = ~is_self
    drop_last = keep.all(1)
    keep[drop_last, -1] = False
    return idx[keep].reshape(n, k)


@torch.no_grad()
def euclidean_knn(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Squared Euclidean distances and indices (n × k, nearest first) of every row's ``k`` nearest
    other rows, computed block by block (never an n × n matrix), with float64's distances.

    From ``EUCLIDEAN_RERANK_MIN_N`` rows on: the rows are centred (distances do not change), the
    ``k + RERANK_MARGIN`` best candidates of each row come from float32 products and are re-scored in
    float64, equal distances ordered by index; a row whose candidates could have missed a nearer point
    (by the rounding bound of float32 distances) is searched again with float64 products, so the lists
    are exact. One thread, Intel Xeon: Stack Overflow's 20,000 MiniLM vectors 7.8 s in float64 products,
    3.6 s this way (CLINC150 10.2 → 4.1 s, USPS pixels 1.6 → 0.9 s; MNIST's 784 pixels gain nothing).
    Below, float64 products throughout (under a second; equal distances in the order ``topk`` gives).
    """
    X64 = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64).reshape(len(X), -1))
    n, dim = X64.shape
    k = int(k)
    if n < EUCLIDEAN_RERANK_MIN_N:
        _, d2, idx = _nearest(X64, X64, torch.arange(n), k)
        return d2.numpy(), idx.numpy()
    X64 = X64 - X64.mean(0)
    candidates = min(n - 1, k + RERANK_MARGIN)
    last, d2, idx = _nearest(X64.float(), X64, torch.arange(n), candidates, exact=True)
    if candidates < n - 1:
        # a point y left out of row x's candidates was computed no nearer than the last candidate. Were it
        # nearer than the k-th (distance r), then |x| + |y| <= R = 2|x| + r; rounding the inputs to float32
        # moves |x - y| by at most u·R, the product and the float32 sums move its square by at most
        # (1 + 3·d)·u·R², so it was computed at most (r + u·R)² + (1 + 3·d)·u·R² away (u = 2^-24). Rows
        # whose last candidate is not beyond that are searched again with float64 products.
        unit = 2.0 ** -24
        kth = d2[:, k - 1].sqrt()
        reach = 2 * X64.norm(dim=1) + kth
        doubtful = torch.nonzero(last <= (kth + unit * reach) ** 2 + (1 + 3 * dim) * unit * reach**2).flatten()
        if len(doubtful):
            _, d2[doubtful], idx[doubtful] = _nearest(X64, X64, doubtful, candidates, exact=True)
    return d2[:, :k].numpy(), idx[:, :k].numpy()


def _nearest(Xq: torch.Tensor, X64: torch.Tensor, rows: torch.Tensor, m: int, exact: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the query ``rows`` of ``Xq`` (the data in the precision of the products): the ``m``-th smallest
    squared distance as computed, and the squared distances and indices of the ``m`` nearest other rows;
    ``exact``: re-scored on the float64 rows ``X64`` (differences, not products), equal distances by index."""
    n = Xq.shape[0]
    acc = torch.float64 if Xq.dtype == torch.float64 else torch.float32
    sq = (Xq.to(acc) ** 2).sum(1)
    # a block's distances are 16 MiB of float32, its gathered candidates (block × m × d float64) at most 64 MiB
    block = max(16, min(max(64, _BLOCK_ELEMS["cpu"] // n), (1 << 23) // (m * X64.shape[1])))
    last = torch.empty(len(rows), dtype=acc)
    dists = torch.empty((len(rows), m), dtype=torch.float64)
    idx = torch.empty((len(rows), m), dtype=torch.int64)
    for start in range(0, len(rows), block):
        ids = rows[start:start + block]
        d2 = (sq[ids, None] - 2 * (Xq[ids] @ Xq.T).to(acc) + sq[None, :]).clamp_min_(0)
        d2[torch.arange(len(ids)), ids] = float("inf")
        d, best = d2.topk(m, dim=1, largest=False)
        last[start:start + block] = d[:, -1]
        if exact:
            best = best.sort(dim=1).values
            d, order = ((X64[ids, None, :] - X64[best]) ** 2).sum(-1).sort(dim=1, stable=True)
            best = best.gather(1, order)
        dists[start:start + block], idx[start:start + block] = d.double(), best
    return last.double(), dists, idx


def neighbour_mean(reference: np.ndarray, queries: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``values`` (one row per reference point) over each query's ``k`` nearest reference points
    (Euclidean): the k-NN induction that carries a transductive clustering to new samples."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min(int(k), len(reference))).fit(reference)
    return np.asarray(values, dtype=np.float64)[nn.kneighbors(queries, return_distance=False)].mean(1)
