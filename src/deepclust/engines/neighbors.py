"""k nearest neighbours, batched: by cosine similarity on the device (SCAN's mining step), and by
Euclidean distance (:func:`euclidean_knn`, AC-PIC's graph).

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
def euclidean_knn(X: np.ndarray, k: int, *, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Squared Euclidean distances and indices (n × k, nearest first) of every row's ``k`` nearest
    other rows, computed block by block (never an n × n matrix)."""
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64))
    sq = (Xt * Xt).sum(1)
    n = Xt.shape[0]
    dists, idx = [], []
    for start in range(0, n, block):
        xb = Xt[start:start + block]
        d2 = (sq[start:start + block, None] - 2 * xb @ Xt.T + sq[None, :]).clamp_min_(0)
        d2[torch.arange(xb.shape[0]), torch.arange(start, start + xb.shape[0])] = float("inf")
        d, i = torch.topk(d2, k, dim=1, largest=False)
        dists.append(d)
        idx.append(i)
    return torch.cat(dists).numpy(), torch.cat(idx).numpy()


def neighbour_mean(reference: np.ndarray, queries: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``values`` (one row per reference point) over each query's ``k`` nearest reference points
    (Euclidean): the k-NN induction that carries a transductive clustering to new samples."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min(int(k), len(reference))).fit(reference)
    return np.asarray(values, dtype=np.float64)[nn.kneighbors(queries, return_distance=False)].mean(1)
