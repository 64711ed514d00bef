"""Checking user inputs once, at the boundary, with messages in the user's terms."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse
import torch

from deepclust.errors import DeepclustError, DeepclustTypeError

ArrayLike = Any  # np.ndarray | torch.Tensor | sequence


def as_float_array(X: ArrayLike, *, name: str = "X", min_dims: int = 2, max_dims: int = 4) -> np.ndarray:
    """Return ``X`` as a finite float32 NumPy array with a sample axis first.

    Accepts NumPy arrays (memory-mapped ones stay mapped when already float32), torch tensors,
    nested sequences and object arrays of numbers. Raises :class:`DeepclustError` for empty input,
    the wrong number of dimensions, sparse, complex or non-numeric values, NaN or infinity
    (messages follow scikit-learn's ``check_array`` where it has one).
    """
    if isinstance(X, torch.Tensor):
        X = X.detach().cpu().numpy()
    if scipy.sparse.issparse(X):
        raise DeepclustError(f"{name} is sparse; sparse input is not supported: pass a dense array "
                             f"({name}.toarray()) or reduce the dimension first (e.g. TruncatedSVD)")
    try:
        arr = np.asarray(X)
        if arr.dtype == object:  # numbers held as Python objects (e.g. from a mixed DataFrame)
            arr = arr.astype(np.float64)
    except TypeError as exc:
        raise DeepclustTypeError(f"{name} could not be read as a numeric array: {exc}") from exc
    except ValueError as exc:
        raise DeepclustError(f"{name} could not be read as a numeric array: {exc}") from exc
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise DeepclustError(f"{name} holds complex numbers. Complex data not supported: pass the real part, "
                             "or the real and imaginary parts as separate features")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DeepclustError(f"{name} must be numeric, got values of type {arr.dtype}")
    if arr.ndim == 1 and min_dims <= 2:
        raise DeepclustError(
            f"{name} is 1-D with shape {arr.shape}; pass a 2-D array of shape (n_samples, n_features). "
            "Reshape your data with X.reshape(-1, 1) for a single feature or X.reshape(1, -1) for a single sample"
        )
    if not (min_dims <= arr.ndim <= max_dims):
        raise DeepclustError(
            f"{name} has {arr.ndim} dimensions (shape {arr.shape}); expected between {min_dims} and {max_dims}: "
            "(n_samples, n_features), (n_samples, H, W) or (n_samples, C, H, W)"
        )
    if arr.shape[0] == 0:
        raise DeepclustError(f"{name} is empty: it has no samples")
    if arr.size == 0:
        raise DeepclustError(f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
    if arr.dtype == np.float32:
        check_finite(arr, name=name)
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        check_finite(arr, name=name)  # NaN or infinity in the input itself
    with np.errstate(over="ignore"):  # values beyond float32's range: reported below
        out = arr.astype(np.float32)
    bad = _first_non_finite(out)
    if bad is not None:  # finite before the cast: beyond float32's range (about ±3.4e38)
        raise DeepclustError(f"{name} holds values too large for float32 (first at sample {bad[0]}; the largest "
                             f"float32 is {np.finfo(np.float32).max:.3g}); rescale them before clustering")
    return out


def _first_non_finite(arr: np.ndarray, chunk: int = 1 << 22) -> tuple[int, str] | None:
    """(sample index, "NaN" or "infinite") of the first sample holding a non-finite value, or None
    (chunked, no big copy)."""
    flat = arr.reshape(arr.shape[0], -1)
    rows_per_chunk = max(1, chunk // max(1, flat.shape[1]))
    for start in range(0, flat.shape[0], rows_per_chunk):
        block = flat[start : start + rows_per_chunk]
        finite = np.isfinite(block)
        if not finite.all():
            return start + int(np.argmin(finite.all(axis=1))), "NaN" if np.isnan(block).any() else "infinite"
    return None


def check_finite(arr: np.ndarray, *, name: str = "X") -> None:
    """Raise if ``arr`` holds NaN or infinity, naming the first offending sample."""
    bad = _first_non_finite(arr)
    if bad is not None:
        raise DeepclustError(
            f"{name} contains {bad[1]} values (first at sample {bad[0]}); remove or impute them before clustering"
        )


def check_not_constant(X: np.ndarray, *, name: str = "X") -> None:
    """Refuse data whose samples are all identical: every clustering of them is arbitrary and every
    label-free score undefined."""
    flat = X.reshape(len(X), -1)
    if len(flat) > 1 and bool((flat.max(axis=0) == flat.min(axis=0)).all()):
        raise DeepclustError(f"all {len(flat)} samples of {name} are identical: there is nothing to cluster")


SEED_MAX = 2**32 - 1  # NumPy's legacy seeding takes 0 … 2**32 - 1


def check_seed(seed: Any, *, name: str = "seed") -> int:
    """Validate a random seed: a whole number from 0 to 2**32 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= SEED_MAX:
        raise DeepclustError(f"{name} must be a whole number from 0 to {SEED_MAX}, got {seed!r}")
    return int(seed)


def check_number(value: Any, name: str, *, positive: bool = False) -> float:
    """Validate a hyper-parameter that is a finite real number, >= 0 (> 0 with ``positive``)."""
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.number)) and bool(np.isfinite(value))
          and (value > 0 if positive else value >= 0))
    if not ok:
        raise DeepclustError(f"{name} must be a finite number {'>' if positive else '>='} 0, got {value!r}")
    return float(value)


def check_n_clusters(n_clusters: Any, n_samples: int | None = None, *, name: str = "n_clusters") -> int:
    """Validate a number of clusters: an integer with ``1 <= k <= n_samples``."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)):
        raise DeepclustError(f"{name} must be a whole number, got {n_clusters!r}")
    k = int(n_clusters)
    if k < 1:
        raise DeepclustError(f"{name} must be at least 1, got {k}")
    if n_samples is not None and k > n_samples:
        raise DeepclustError(f"{name}={k} is larger than the number of samples ({n_samples}); choose k <= {n_samples}")
    return k


def check_labels(y: ArrayLike, n_samples: int | None = None, *, name: str = "labels") -> np.ndarray:
    """Return labels as a 1-D array, checking the length against ``n_samples``."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise DeepclustError(f"{name} must be 1-D, got shape {arr.shape}")
    if n_samples is not None and arr.shape[0] != n_samples:
        raise DeepclustError(f"{name} has {arr.shape[0]} entries but there are {n_samples} samples")
    return arr


# ---------------------------------------------------------------------------------------------- supervision
def check_partial_labels(y: ArrayLike, n_samples: int, n_clusters: int | None = None, *,
                         name: str = "y") -> np.ndarray:
    """Partial labels in scikit-learn's semi-supervised convention: one whole number per sample, ``-1``
    for an unlabelled sample. Returns an int64 array; refuses other negative values and labels of more
    distinct classes than ``n_clusters``."""
    arr = check_labels(y if not isinstance(y, torch.Tensor) else y.cpu().numpy(), n_samples, name=name)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DeepclustError(f"{name} must hold whole numbers (class ids, -1 for unlabelled samples), "
                             f"got values of type {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise DeepclustError(f"{name} must hold whole numbers (class ids, -1 for unlabelled samples); "
                             "it holds fractions, NaN or infinity")
    out = arr.astype(np.int64)
    if (out < -1).any():
        raise DeepclustError(f"{name} holds {int(out.min())} (sample {int(np.argmin(out))}); class ids are "
                             ">= 0 and -1 marks an unlabelled sample")
    classes = np.unique(out[out >= 0])
    if n_clusters is not None and len(classes) > n_clusters:
        raise DeepclustError(f"{name} labels samples with {len(classes)} classes but n_clusters={n_clusters}; "
                             f"give at most {n_clusters} classes or raise n_clusters")
    return out


def check_pairs(pairs: Any, n_samples: int, *, name: str) -> np.ndarray:
    """Pairwise constraints as an (m, 2) int64 array of sample indices, each in ``0 … n_samples - 1``."""
    if pairs is None:
        return np.zeros((0, 2), np.int64)
    arr = np.asarray(pairs.cpu().numpy() if isinstance(pairs, torch.Tensor) else pairs)
    if arr.size == 0:
        return np.zeros((0, 2), np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DeepclustError(f"{name} must be a list of (i, j) pairs of sample indices, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        raise DeepclustError(f"{name} must hold whole-number sample indices, got values of type {arr.dtype}")
    bad = (arr < 0) | (arr >= n_samples)
    if bad.any():
        row = int(np.argmax(bad.any(axis=1)))
        raise DeepclustError(f"{name} pair {row} ({int(arr[row, 0])}, {int(arr[row, 1])}) names a sample outside "
                             f"0 … {n_samples - 1} (there are {n_samples} samples)")
    return arr.astype(np.int64)


def must_link_components(must_link: np.ndarray, n_samples: int) -> np.ndarray:
    """Component id of every sample under the transitive closure of the must-link pairs."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(must_link)), (must_link[:, 0], must_link[:, 1])), shape=(n_samples, n_samples))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def check_constraints(must_link: Any, cannot_link: Any, n_samples: int,
                      y: np.ndarray | None = None, *, noisy: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Validate must-link and cannot-link pairs (and their agreement with partial labels ``y``, -1 =
    unlabelled): indices in range, no sample cannot-linked to itself, no cannot-link inside one
    must-link component (a pair both must and cannot, directly or through a chain of must-links), no
    must-link chain joining two different labels and no cannot-link between two samples of one label.
    ``noisy``: the pairs are noisy annotations (for a method that models their errors), so
    contradictions among them are data, not mistakes, and only indices and self-pairs are checked.
    Returns the two (m, 2) int64 arrays."""
    ml = check_pairs(must_link, n_samples, name="must_link")
    cl = check_pairs(cannot_link, n_samples, name="cannot_link")
    self_cl = cl[:, 0] == cl[:, 1]
    if self_cl.any():
        i = int(cl[np.argmax(self_cl), 0])
        raise DeepclustError(f"cannot_link pairs sample {i} with itself; a sample is always in its own cluster")
    if noisy:
        return ml, cl
    comp = must_link_components(ml, n_samples)
    clash = comp[cl[:, 0]] == comp[cl[:, 1]]
    if clash.any():
        i, j = (int(v) for v in cl[np.argmax(clash)])
        direct = {(i, j), (j, i)} & set(map(tuple, ml.tolist()))
        how = "both must-link and cannot-link" if direct else "cannot-link but joined by a chain of must-links"
        raise DeepclustError(f"samples {i} and {j} are {how}: the constraints contradict each other")
    if y is not None and (y >= 0).any():
        labelled = np.flatnonzero(y >= 0)
        order = np.lexsort((y[labelled], comp[labelled]))
        c, lab = comp[labelled][order], y[labelled][order]
        split = (c[1:] == c[:-1]) & (lab[1:] != lab[:-1])
        if split.any():
            a, b = labelled[order][np.argmax(split)], labelled[order][np.argmax(split) + 1]
            raise DeepclustError(f"samples {a} and {b} are must-linked (directly or through a chain) but labelled "
                                 f"{y[a]} and {y[b]}: the labels and constraints contradict each other")
        same = (y[cl[:, 0]] >= 0) & (y[cl[:, 0]] == y[cl[:, 1]])
        if same.any():
            i, j = (int(v) for v in cl[np.argmax(same)])
            raise DeepclustError(f"samples {i} and {j} are cannot-linked but both labelled {y[i]}: the labels and "
                                 "constraints contradict each other")
    return ml, cl
