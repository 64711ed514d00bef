"""One clustering run from input to files: load → featurise → fit → score → write.

Shared by ``deepclust cluster`` and ``deepclust bench`` so both measure and record the same way.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepclust import distributed, metrics
from deepclust.base import BaseClusterer
from deepclust.data import Dataset, load_input
from deepclust.device import resolve_device
from deepclust.encoders.api import ENCODER_NAMES, encode_with_info
from deepclust.errors import DeepclustError
from deepclust.merge import TREE_FILE, merge_tree
from deepclust.methods import get_method_info, make_method
from deepclust.noise import NATIVE_NOISE, mark_noise, noise_summary, scores_with_noise
from deepclust.output import check_out_dir, write_run_dir
from deepclust.runtime import describe_device, json_safe, peak_memory_mb, seed_everything, thread_info, versions
from deepclust.supervision import (
    KINDS, Supervision, read_supervision, refuse_supervision, scored_mask, takes_supervision,
)
from deepclust.training import interrupts_abort
from deepclust.validation import check_n_clusters, check_not_constant, check_seed

ENCODERS = ENCODER_NAMES  # and local model paths; see deepclust.encoders


@dataclass
class ClusteringResult:
    """Everything a finished run produced, ready to be written or recorded."""

    dataset: Dataset
    method: str
    params: dict[str, Any]
    model: BaseClusterer
    labels: np.ndarray
    confidence: np.ndarray
    scores: dict[str, float]
    seconds: dict[str, float]
    device: str
    device_name: str
    encoder: str
    peak_memory_mb: float
    extra: dict[str, Any] = field(default_factory=dict)
    encoder_info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    threads: dict[str, Any] = field(default_factory=dict)
    noise: dict[str, Any] | None = None  # --noise: what deepclust.noise.noise_summary records
    scores_assigned: dict[str, float] | None = None  # --noise: the scores on the assigned points only
    k_alternatives: dict[str, Any] | None = None  # `run --k auto`: the other k the evidence supports
    supervision: dict[str, int] | None = None  # counts of the labels/constraints given, and of the scored samples

    def summary(self) -> dict[str, Any]:
        """The metrics.json content: strict JSON (an undefined score is ``null``, never NaN)."""
        meta = self.dataset.meta
        found = int(len(np.unique(self.labels[self.labels >= 0])))
        return json_safe({
            "dataset": meta.name,
            "protocol": meta.protocol,
            "modality": meta.modality,
            "n_samples": int(len(self.labels)),
            "method": self.method,
            "params": self.params,
            "encoder": self.encoder,
            "encoder_info": self.encoder_info,
            "n_clusters": int(self.params.get("n_clusters") or found),
            "n_clusters_found": found,
            "converged": getattr(self.model, "converged_", None),  # False: stopped at an iteration limit
            "warnings": self.warnings,
            **({"supervision": self.supervision} if self.supervision else {}),
            **({"chosen_by_cv": {"chosen": self.model.chosen_, "cv_scores": self.model.cv_scores_,
                                 "cv_margin": self.model.cv_margin_,
                                 "cv_seconds": self.model.cv_seconds_}} if hasattr(self.model, "cv_scores_") else {}),
            "scores": self.scores,
            **({"noise": self.noise, "scores_assigned": self.scores_assigned} if self.noise is not None else {}),
            **({"k_alternatives": self.k_alternatives} if self.k_alternatives is not None else {}),
            "seconds": self.seconds,
            "peak_memory_mb": round(self.peak_memory_mb, 1),
            "device": self.device,
            "device_name": self.device_name,
            **self.threads,
            "versions": versions(),
        })


@interrupts_abort()  # Ctrl-C ends the run: a half-trained model is never scored or written
def run_clustering(
    dataset: Dataset | str,
    method: str,
    n_clusters: int | None,
    *,
    seed: int = 0,
    device: str = "auto",
    encoder: str = "raw",
    params: dict[str, Any] | None = None,
    data_dir: str | None = None,
    read_kwargs: dict[str, Any] | None = None,
    encoder_params: dict[str, Any] | None = None,
    cache: bool = True,
    features: tuple[np.ndarray, dict[str, Any]] | None = None,
    noise: bool = False,
    labels_file: str | Path | None = None,
    labels_column: str | None = None,
    constraints_file: str | Path | None = None,
    supervision: Supervision | None = None,
) -> ClusteringResult | None:
    """Fit ``method`` on ``dataset`` (a Dataset, a built-in name or a path) and score it.

    Under torchrun (:mod:`deepclust.distributed`) every rank loads the data and fits its shard of a
    data-parallel method; rank 0 then scores and returns the result, the other ranks return None.

    ``features``: the (array, encoder info) that :func:`deepclust.encoders.encode_with_info`
    already returned for this dataset and encoder, so that they are not computed twice.
    ``noise``: leave points that belong nowhere unassigned (-1), see :mod:`deepclust.noise`.

    ``labels_file`` / ``constraints_file`` (read by :func:`deepclust.supervision.read_supervision`), a
    ``labels_column`` of a table input (empty cells = unlabelled; not a feature) or ``supervision``
    give partial labels and pairwise constraints to a method that uses them; the external scores
    then count only the samples they do not name.

    Problems the user should know about (k larger than the number of distinct points, a
    ``n_clusters`` that the method ignores) are warned and listed in ``warnings``."""
    info = get_method_info(method)  # unknown method: fail before loading anything
    check_seed(seed)
    finds_k = not info.load_class()._requires_n_clusters
    if distributed.active() and not info.load_class()._data_parallel:
        from deepclust.methods import METHODS

        parallel = ", ".join(sorted(n for n, m in METHODS.items() if m.load_class()._data_parallel))
        raise DeepclustError(f"{info.name} does not train data-parallel, so torchrun would run it whole on every "
                             f"process: run it without torchrun (data-parallel methods: {parallel})")
    if labels_file or labels_column or constraints_file:  # refused before any data are read
        given = [k for k, f in zip(KINDS, (labels_file or labels_column, constraints_file)) if f]
        refuse_supervision(info.name, given, takes_supervision(info.load_class()))
    dev = resolve_device(device)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    read_kwargs = {**(read_kwargs or {}), **({"keep_columns": (labels_column,)} if labels_column else {})}
    ds = dataset if isinstance(dataset, Dataset) else load_input(dataset, data_dir=data_dir, **read_kwargs)
    seconds["load"] = time.perf_counter() - t0
    if len(ds) == 0:
        raise DeepclustError(f"{ds.meta.name} is empty: it has no samples")
    notes: list[str] = []
    if finds_k:
        if n_clusters is not None:
            notes.append(f"{info.name} finds the number of clusters itself: n_clusters={n_clusters} is ignored")
        k = None
    else:
        if n_clusters is None:
            if ds.meta.n_classes is None:
                raise DeepclustError("--n-clusters is required: this input has no known number of classes")
            n_clusters = ds.meta.n_classes
        k = check_n_clusters(n_clusters, len(ds))

    t0 = time.perf_counter()
    X, enc_info = features if features is not None else encode_with_info(
        ds, encoder, device=dev, cache=cache, random_state=seed, **(encoder_params or {}))
    seconds["features"] = time.perf_counter() - t0
    check_not_constant(X, name=ds.meta.name)
    if labels_file or labels_column or constraints_file:
        cells = (labels_column, ds.extra[labels_column]) if labels_column else None
        supervision = read_supervision(len(ds), k, labels_file, constraints_file, labels_cells=cells,
                                       noisy=getattr(info.load_class(), "_noisy_constraints", False))
    if supervision is not None:
        refuse_supervision(info.name, supervision.kinds, takes_supervision(info.load_class()))

    for key, option in (("n_clusters", "-k/--n-clusters"), ("random_state", "--seed"), ("device", "--device")):
        if key in (params or {}):
            raise DeepclustError(f"--param {key}=… is not taken: give it with {option}")
    all_params = {**(params or {}), "n_clusters": k, "random_state": seed, "device": str(device)}
    seed_everything(seed)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    model = make_method(info.name, **all_params)
    t0 = time.perf_counter()
    model.fit(X, **(supervision.fit_kwargs() if supervision is not None else {}))
    seconds["fit"] = time.perf_counter() - t0
    if not distributed.is_main():  # torchrun: this rank fitted its shard; rank 0 scores and writes
        return None
    for phase, sec in (getattr(model, "timings_", None) or {}).items():
        seconds[f"fit.{phase}"] = float(sec)

    labels = np.asarray(model.labels_)
    found = len(np.unique(labels[labels >= 0]))
    if finds_k and notes:
        notes[-1] += f"; it found {found}"
    if k is not None and found < k:
        flat = X.reshape(len(X), -1)
        distinct = len(np.unique(flat, axis=0))
        notes.append(f"{k} clusters were asked for but {found} were found"
                     + (f": the data hold only {distinct} distinct points" if distinct < k else ""))
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    t0 = time.perf_counter()
    confidence = model.predict_proba(X).max(axis=1)
    space = model.transform(X) if info.deep else X
    noise_info = scores_assigned = None
    if noise:
        labels = mark_noise(space, labels, info.name in NATIVE_NOISE)
        noise_info = noise_summary(labels, info.name in NATIVE_NOISE)
    scores = metrics.internal_scores(space.reshape(len(space), -1), labels, random_state=seed)
    scored = scored_mask(supervision, len(labels))
    if ds.y is not None and scored.any():  # never on the samples the user labelled or constrained
        if noise:
            on_all, on_assigned = scores_with_noise(ds.y[scored], labels[scored])
            scores_assigned = {**scores, **on_assigned}
            scores.update(on_all)
        else:
            scores.update(metrics.external_scores(ds.y[scored], labels[scored]))
    seconds["score"] = time.perf_counter() - t0
    tree = merge_tree(space, labels, ds.y if supervision is None else None)  # its scores: unsupervised runs only
    seconds["total"] = sum(v for key, v in seconds.items() if "." not in key)
    return ClusteringResult(
        dataset=ds, method=info.name, params=all_params, model=model, labels=labels,
        confidence=np.asarray(confidence, dtype=np.float32), scores={k_: float(v) for k_, v in scores.items()},
        seconds={k_: round(v, 4) for k_, v in seconds.items()}, device=str(dev),
        device_name=describe_device(dev), encoder=enc_info["name"], peak_memory_mb=peak_memory_mb(dev),
        encoder_info=enc_info, extra={"features": X, "merge_tree": tree}, warnings=notes, 
        threads={**thread_info(), **({"processes": distributed.world_size()} if distributed.active() else {})},
        noise=noise_info, scores_assigned=scores_assigned,
        supervision=None if supervision is None else {**supervision.describe(), "n_scored": int(scored.sum())},
    )


def prepare_out_dir(out: str | Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Check that ``out`` may be written (see :func:`deepclust.output.check_out_dir`)."""
    return check_out_dir(out, overwrite, inputs)


def write_outputs(result: ClusteringResult, out: str | Path, *, overwrite: bool = False,
                  extra_files: dict[str, str | bytes] | None = None,
                  inputs: Iterable[str | Path | None] = ()) -> Path:
    """Write assignments.csv, metrics.json, model/ and ``extra_files`` (name → text or bytes, e.g.
    the report) into the run folder ``out`` atomically (:func:`deepclust.output.write_run_dir`):
    an error or Ctrl-C leaves nothing half-written and an existing run untouched."""

    def fill(folder: Path) -> None:
        with open(folder / "assignments.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["index", "cluster", "confidence"])
            writer.writerows(zip(range(len(result.labels)), result.labels.tolist(),
                                 np.round(result.confidence, 6).tolist()))
        (folder / "metrics.json").write_text(json.dumps(result.summary(), indent=2, allow_nan=False))
        result.model.save(folder / "model")
        if "merge_tree" in result.extra:  # for `deepclust merge`
            (folder / TREE_FILE).write_text(json.dumps(json_safe(result.extra["merge_tree"])))
        for name, content in (extra_files or {}).items():
            target = folder / name
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")

    return write_run_dir(out, fill, overwrite=overwrite, inputs=inputs)
