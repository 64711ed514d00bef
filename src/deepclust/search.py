"""Choosing the clustering pipeline without labels: candidates scored on one common yardstick.

``deepclust run`` does not trust one fixed pipeline. Given the encoder's features and k, it fits a
few candidate pipelines, cheapest first, within a time budget:

* ``kmeans`` — k-means on the features;
* ``umap+kmeans`` and ``umap+gmm`` — k-means / a Gaussian mixture on a 10-D UMAP layout of the
  features (``min_dist`` = 0; N2D's manifold step, McConville et al. ICPR 2020);
* ``ward`` — Ward's agglomerative clustering of the features (up to ``WARD_MAX_SAMPLES`` points).

(On a GPU, ``run`` gives images to DEPICT instead, which learns its own embedding.)

Each candidate's labels are scored by the silhouette in the *same* UMAP layout of the features, on
one fixed subsample. Lowe et al. ("An Empirical Study into Clustering of Unseen Datasets with
Self-Supervised Encoders", 2024) found that this score tracks clustering quality (AMI) across
encoders and data sets, where the silhouette in each candidate's own space does not. The highest
score wins; ties go to the cheaper candidate. The rule looks at no label; it was fixed before it
was measured on the visible sets (BENCHMARKS.md, "Choosing the pipeline").

**Several representations** (:func:`combine`): where ``run`` can try more than one encoder (images
clustered on their pixels also get the ``autoencoder`` embedding, N2D's first step), each
representation chooses its own k and pipeline as above, and the representations are compared by
their winners' silhouettes, each in its own representation's layout: the comparison Lowe et al.
made across encoders, where the silhouette in the UMAP-reduced embedding tracked AMI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from deepclust.errors import DeepclustError

#: UMAP settings of the common layout (and of the ``umap`` candidates, so they share it)
LAYOUT = {"n_components": 10, "n_neighbors": 15, "min_dist": 0.0}
#: points on which each candidate's silhouette is computed
SCORE_SAMPLES = 5_000
#: Ward needs O(n²) memory and time: above this many points it is not a candidate
WARD_MAX_SAMPLES = 10_000


@dataclass
class Candidate:
    """One pipeline: the method (a catalogue name) and its settings, with its labels and score."""

    name: str
    method: str
    params: dict[str, Any]
    labels: np.ndarray | None = None
    score: float | None = None
    seconds: float = 0.0
    skipped: str | None = None  # why it was not fitted
    encoder: str | None = None  # the representation it clustered (set by :func:`combine`)
    k: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "method": self.method, "params": self.params,
               "score": None if self.score is None else round(float(self.score), 4),
               "seconds": round(self.seconds, 2), "skipped": self.skipped}
        return out if self.encoder is None else {**out, "encoder": self.encoder, "k": self.k}


@dataclass
class PipelineChoice:
    """The winner, every candidate with its score, the rule, and the shared layout."""

    winner: Candidate
    candidates: list[Candidate]
    rule: str
    layout: np.ndarray | None = field(default=None, repr=False)
    seconds: dict[str, float] = field(default_factory=dict)

    #: per representation compared (:func:`combine`): encoder, k, best score, seconds, or why skipped
    representations: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {"winner": self.winner.name, "rule": self.rule, "candidates": [c.to_dict() for c in self.candidates],
               "seconds": {k: round(v, 2) for k, v in self.seconds.items()}}
        return {**out, "representations": self.representations} if self.representations else out


RULE = ("highest silhouette of the candidate's clusters in a 10-D UMAP layout of the features "
        "(Lowe et al. 2024); ties go to the cheaper candidate")


def candidates_for(n_samples: int) -> list[Candidate]:
    """The candidate pipelines, cheapest first."""
    out = [Candidate("kmeans", "kmeans", {}),
           Candidate("umap+kmeans", "umap", {"clusterer": "kmeans", **LAYOUT}),
           Candidate("umap+gmm", "umap", {"clusterer": "gmm", **LAYOUT}),
           Candidate("ward", "agglomerative", {})]
    if n_samples > WARD_MAX_SAMPLES:
        out[-1].skipped = f"more than {WARD_MAX_SAMPLES:,} points (Ward needs O(n²) memory)"
    return out


def layout_silhouette(layout: np.ndarray, labels: np.ndarray, sample: np.ndarray) -> float:
    """Silhouette of ``labels`` in the layout on the rows ``sample`` (-1 when it is undefined)."""
    from sklearn.metrics import silhouette_score

    lab = np.asarray(labels)[sample]
    if len(np.unique(lab)) < 2 or len(np.unique(lab)) >= len(lab):
        return -1.0
    return float(silhouette_score(layout[sample], lab))


def choose_pipeline(X: np.ndarray, k: int, *, random_state: int = 0, device: Any = "cpu",
                    budget_s: float | None = None, fit: Callable[[Candidate], np.ndarray] | None = None,
                    echo: Callable[[str], None] | None = None) -> PipelineChoice:
    """Fit the candidates on the features ``X`` with ``k`` clusters and return the best by :data:`RULE`.

    ``fit(candidate)`` returns a candidate's labels (default: fit its method on ``X``; ``umap``
    candidates reuse the shared layout). Candidates that would start after ``budget_s`` seconds are
    skipped and say so; the first one always runs.
    """
    from deepclust.reduction import umap_layout

    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    if len(X) < 3 * LAYOUT["n_neighbors"]:
        raise DeepclustError(f"{len(X)} samples are too few to compare pipelines; give --method")
    say = echo or (lambda msg: None)
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    layout = umap_layout(X, random_state=random_state, **LAYOUT)
    seconds["layout"] = time.perf_counter() - t_start
    sample = np.random.default_rng(random_state).permutation(len(X))[:SCORE_SAMPLES]
    fit = fit or (lambda c: _fit_labels(c, X, layout, k, random_state, device))
    cands = candidates_for(len(X))
    for i, c in enumerate(cands):
        if c.skipped:
            continue
        if i > 0 and budget_s is not None and time.perf_counter() - t_start > budget_s:
            c.skipped = f"over the time budget ({budget_s:.0f} s)"
            continue
        t0 = time.perf_counter()
        c.labels = np.asarray(fit(c))
        c.seconds = time.perf_counter() - t0
        c.score = layout_silhouette(layout, c.labels, sample)
        say(f"    {c.name:<12} silhouette in the UMAP layout {c.score:.3f}  ({c.seconds:.1f}s)")
    fitted = [c for c in cands if c.score is not None]
    winner = max(fitted, key=lambda c: c.score)  # max keeps the first (cheapest) of equal scores
    seconds["total"] = time.perf_counter() - t_start
    return PipelineChoice(winner, cands, RULE, layout, seconds)


def _fit_labels(c: Candidate, X: np.ndarray, layout: np.ndarray, k: int, seed: int, device: Any) -> np.ndarray:
    from deepclust.methods import make_method

    model = make_method(c.method, n_clusters=k, random_state=seed, device=device, **c.params)
    if c.method == "umap":
        return model.fit_with_layout(X, layout).labels_
    return model.fit(X).labels_


def combine(choices: dict[str, tuple[int, PipelineChoice | None, float, str | None]]) -> tuple[str, PipelineChoice]:
    """One choice across representations: ``choices`` maps each encoder to (k, its choice or None,
    seconds, why skipped). Candidates are renamed ``encoder → pipeline``; the winner is the highest
    silhouette, each scored in its own representation's layout; ties go to the first (cheapest)
    representation. Returns the winning encoder and the combined choice (the winner's layout)."""
    done = {enc: c for enc, (_, c, _, _) in choices.items() if c is not None}
    best = max(done, key=lambda enc: done[enc].winner.score)  # max keeps the first of equal scores
    candidates, reps = [], []
    for enc, (k, choice, secs, skipped) in choices.items():
        reps.append({"encoder": enc, "k": k, "seconds": round(secs, 2), "skipped": skipped,
                     "winner": None if choice is None else choice.winner.name,
                     "score": None if choice is None else round(float(choice.winner.score), 4)})
        for c in choice.candidates if choice is not None else ():
            candidates.append(Candidate(f"{enc} → {c.name}", c.method, c.params, c.labels, c.score, c.seconds,
                                        c.skipped, enc, k))
    win = next(c for c in candidates if c.encoder == best and c.name == f"{best} → {done[best].winner.name}")
    rule = (RULE + "; representations compared by their winners' silhouettes, each in its own layout "
            "(Lowe et al. 2024)")
    return best, PipelineChoice(win, candidates, rule, done[best].layout,
                                {f"{enc}.{key}": v for enc, c in done.items() for key, v in c.seconds.items()}, reps)
