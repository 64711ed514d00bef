"""The catalogue of clustering methods, by name.

One place lists every method the CLI and the benchmark harness know: its class (imported only
when used), a one-line description and its paper reference. Adding a method means writing its
module and adding one entry here.
"""

from __future__ import annotations

import collections.abc
import difflib
import importlib
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepclust.errors import DeepclustError


@dataclass(frozen=True)
class MethodInfo:
    name: str
    target: str  # "module:Class"
    description: str
    reference: str
    deep: bool = False  # trains a network (as opposed to a classical engine)
    defaults: tuple[tuple[str, Any], ...] = ()  # hyper-parameters this name sets (a variant of a class)

    def load_class(self) -> type:
        module_name, _, cls_name = self.target.partition(":")
        return getattr(importlib.import_module(module_name), cls_name)


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in [
        MethodInfo("kmeans", "deepclust.engines.kmeans:KMeans",
                   "k-means in torch (k-means++ init, Lloyd iterations, CPU/CUDA, Euclidean or cosine)",
                   "Lloyd 1982; Arthur & Vassilvitskii, SODA 2007"),
        MethodInfo("minibatch-kmeans", "deepclust.engines.kmeans:MiniBatchKMeans",
                   "streaming mini-batch k-means for data larger than memory",
                   "Sculley, WWW 2010"),
        MethodInfo("gmm", "deepclust.engines.classical:GaussianMixture",
                   "Gaussian mixture fitted by EM (scikit-learn)",
                   "Dempster, Laird & Rubin 1977"),
        MethodInfo("hdbscan", "deepclust.engines.classical:HDBSCAN",
                   "density-based hierarchical clustering; finds k itself, noise gets label -1",
                   "Campello, Moulavi & Sander, PAKDD 2013"),
        MethodInfo("agglomerative", "deepclust.engines.classical:AgglomerativeClustering",
                   "agglomerative clustering with Ward linkage",
                   "Ward, JASA 1963"),
        MethodInfo("pic", "deepclust.engines.pic:PathIntegralClustering",
                   "agglomerative clustering by maximum incremental path integral on a K-NN graph (AC-PIC)",
                   "Zhang, Zhao & Wang, Pattern Recognition 2013"),
        MethodInfo("umap", "deepclust.engines.manifold:ManifoldClustering",
                   "UMAP layout of the given features (min_dist 0), then a Gaussian mixture or k-means on it "
                   "(N2D's manifold step on any embedding)",
                   "McInnes et al., arXiv 1802.03426; McConville et al., ICPR 2020"),
        MethodInfo("kmedoids", "deepclust.engines.classical:KMedoids",
                   "k-medoids by FasterPAM on any dissimilarity (kmedoids package)",
                   "Schubert & Rousseeuw, Information Systems 2021"),
        MethodInfo("seeded-kmeans", "deepclust.engines.constrained:SeededKMeans",
                   "k-means started at the means of a few labelled samples per class (partial labels, -1 = "
                   "unlabelled)", "Basu, Banerjee & Mooney, ICML 2002"),
        MethodInfo("constrained-kmeans", "deepclust.engines.constrained:SeededKMeans",
                   "seeded k-means in which the labelled samples keep their class",
                   "Basu, Banerjee & Mooney, ICML 2002", defaults=(("constrained", True),)),
        MethodInfo("cop-kmeans", "deepclust.engines.constrained:COPKMeans",
                   "k-means under hard must-link / cannot-link constraints (fails when they cannot all hold)",
                   "Wagstaff, Cardie, Rogers & Schroedl, ICML 2001"),
        MethodInfo("pckmeans", "deepclust.engines.constrained:PCKMeans",
                   "k-means with soft pairwise constraints: a penalty weight per violated must-/cannot-link",
                   "Basu, Banerjee & Mooney, SDM 2004"),
        MethodInfo("transductive-fewshot", "deepclust.engines.transductive:TransductiveFewShot",
                   "prototypes + Laplacian regularisation on a K-NN graph + a few labelled points, by a bound "
                   "optimiser with parallel per-point updates", "Ziko et al., arXiv 2106.09516 (2021)"),
        MethodInfo("tim", "deepclust.engines.tim:TransductiveInfoMax",
                   "a few labels + transductive information maximisation: a classifier on the L2-normalised "
                   "features whose predictions on the unlabelled samples are confident and use every class",
                   "Boudiaf et al., NeurIPS 2020 (TIM-GD)"),
        MethodInfo("umap-spreading", "deepclust.engines.spreading:ManifoldLabelSpreading",
                   "a few labels spread over the K-NN graph of the (label-free) UMAP layout by label spreading; "
                   "labelled samples keep their class", "McInnes et al., arXiv 1802.03426; Zhou et al., NIPS 2004"),
        MethodInfo("cluster-then-label", "deepclust.engines.cluster_then_label:ClusterThenLabel",
                   "a label-free clustering (default UMAP + GMM) whose clusters are matched one to one to the "
                   "labelled classes by the Hungarian method; labelled samples keep their class",
                   "Chapelle, Schölkopf & Zien, Semi-Supervised Learning (MIT Press 2006), §1.2.2"),
        MethodInfo("few-labels", "deepclust.engines.fewlabels:FewLabelsAuto",
                   "partial labels: the semi-supervised method (constrained k-means, label spreading on the UMAP "
                   "layout, transductive few-shot on the layout or the features, TIM on the features, the "
                   "label-free UMAP + GMM with its clusters named by the labels) chosen by 5-fold cross-validation "
                   "on the given labels, refitted with all of them", "model selection on the labelled set (e.g. "
                   "Oliver et al., NeurIPS 2018) over Basu et al. 2002, Zhou et al. 2004, Ziko et al. 2021, "
                   "Boudiaf et al. 2020, cluster-then-label (Chapelle et al. 2006)"),
        MethodInfo("ncd-kmeans", "deepclust.engines.discovery:NCDKMeans",
                   "novel-class discovery: k-means of the unlabelled samples whose new centres start away from the "
                   "labelled (known) classes' means; n_novel='auto' by silhouette",
                   "Troisemaine et al., DMKD 2024 (arXiv 2311.05440)"),
        MethodInfo("ncd-spectral", "deepclust.engines.discovery:NCDSpectralClustering",
                   "novel-class discovery: spectral embedding of known and unlabelled samples, then NCD k-means in it",
                   "Troisemaine et al., DMKD 2024 (arXiv 2311.05440)"),
        MethodInfo("gpc", "deepclust.engines.gpc:GPC",
                   "generalized category discovery: semi-supervised GMM on frozen features whose number of components "
                   "(known + novel classes) is found by split and merge", "Zhao, Wen & Han, ICCV 2023"),
        MethodInfo("clusternet", "deepclust.methods.clusternet:ClusterNet",
                   "autoencoder trained with pairwise constraints (contrastive, on the embedding) and a k-means loss "
                   "to learned centres, assignments by constrained k-means", "Shukla, Cheema & Anand, BigMM 2020 "
                   "(arXiv 1806.01547)", deep=True),
        MethodInfo("dcc", "deepclust.methods.dcc:DCC",
                   "deep constrained clustering from noisy pairwise annotations: logistic link loss with a learned "
                   "annotator confusion matrix + log-volume (geometric) regulariser of the memberships",
                   "Nguyen, Ibrahim & Fu, ICML 2023", deep=True),
        MethodInfo("depict", "deepclust.methods.depict:DEPICT",
                   "conv denoising autoencoder + softmax head trained on a frequency-regularised KL target",
                   "Ghasedi Dizaji et al., ICCV 2017", deep=True),
        MethodInfo("ae-kmeans", "deepclust.methods.ae_kmeans:AEKMeans",
                   "autoencoder pretraining, then k-means on the embedding (two-stage baseline)",
                   "e.g. Xie et al., ICML 2016 (AE+k-means baseline)", deep=True),
        MethodInfo("dec", "deepclust.methods.dec:DEC",
                   "Deep Embedded Clustering: Student's t assignments trained towards p²/f by KL",
                   "Xie, Girshick & Farhadi, ICML 2016", deep=True),
        MethodInfo("idec", "deepclust.methods.dec:IDEC",
                   "DEC plus the autoencoder's reconstruction loss (gamma 0.1) to keep local structure",
                   "Guo, Gao, Liu & Yin, IJCAI 2017", deep=True),
        MethodInfo("n2d", "deepclust.methods.n2d:N2D",
                   "autoencoder embedding → UMAP (local manifold) → Gaussian mixture",
                   "McConville et al., ICPR 2020", deep=True),
        MethodInfo("deepcluster", "deepclust.methods.deepcluster:DeepCluster",
                   "k-means on the network's features each epoch → re-initialised classifier trained on the "
                   "pseudo-labels (balanced sampling); MLP on embeddings, conv net on images",
                   "Caron et al., ECCV 2018", deep=True),
        MethodInfo("clusterfit", "deepclust.methods.deepcluster:ClusterFit",
                   "k-means once on the given (pretrained) features → network trained on those pseudo-labels",
                   "Yan et al., CVPR 2020", deep=True),
        MethodInfo("sela", "deepclust.methods.sela:SeLa",
                   "self-labelling: equal-size (or prior-size) pseudo-labels by Sinkhorn-Knopp optimal transport, "
                   "alternating with training the head on them (embeddings)",
                   "Asano, Rupprecht & Vedaldi, ICLR 2020", deep=True),
        MethodInfo("scan", "deepclust.methods.scan:SCAN",
                   "mined nearest neighbours + SCAN loss on clustering heads, then self-labelling on confident "
                   "samples (embeddings; on images also the SimCLR pretext and strong augmentations)",
                   "Van Gansbeke et al., ECCV 2020", deep=True),
        MethodInfo("p2ot", "deepclust.methods.p2ot:P2OT",
                   "imbalanced clusters: progressive partial optimal transport pseudo-labels (a growing share of "
                   "the mass, KL-relaxed cluster sizes) training a head on embeddings",
                   "Zhang, Ren & He, ICLR 2024", deep=True),
        MethodInfo("sp2ot", "deepclust.methods.p2ot:P2OT",
                   "P2OT plus a k-NN semantic regulariser (neighbours share a cluster), solved by "
                   "majorization-minimization", "Zhang, Ren & He, arXiv 2404.03446", deep=True,
                   defaults=(("semantic_weight", 0.5),)),
        MethodInfo("cpp", "deepclust.methods.cpp:CPP",
                   "CPP: features refined by maximal coding rate reduction with a doubly stochastic membership "
                   "(Sinkhorn) learned on frozen embeddings, spectral clustering of the membership; k by coding "
                   "length (estimate_k)", "Chu et al., ICLR 2024", deep=True),
        MethodInfo("mlc", "deepclust.methods.mlc:MLC",
                   "MLC: features and a doubly stochastic membership learned jointly by maximal coding rate "
                   "reduction, after a coding-rate warm-up and the one-shot initialisation of the membership",
                   "Ding et al., ICCV 2023", deep=True),
        MethodInfo("pbn", "deepclust.methods.pbn:PBN",
                   "novel-class discovery in tables: encoder trained on known-class labels + reconstruction; the novel "
                   "classes are k-means clusters of its latent space, their number its silhouette maximum",
                   "Troisemaine et al., DMKD 2024 (arXiv 2311.05440)", deep=True),
        MethodInfo("deepdpm", "deepclust.methods.deepdpm:DeepDPM",
                   "DeepDPM: a clustering net and per-cluster subclustering nets fitted to a Dirichlet-process "
                   "Gaussian mixture's E-step; k found by split and merge moves accepted by the Metropolis-Hastings "
                   "ratio of NIW marginal likelihoods (given features)",
                   "Ronen, Finder & Freifeld, CVPR 2022", deep=True),
        MethodInfo("tell", "deepclust.methods.tell:TELL",
                   "interpretable neural clustering: k-means as a layer whose weights are the centres, trained by "
                   "mini-batch gradient descent; explains clusters by their centres and samples by the deciding "
                   "features", "Peng et al., JMLR 2022", deep=True),
    ]
}


def register_method(info: MethodInfo) -> None:
    """Add a method to the catalogue (for plug-ins and for the deep methods' modules)."""
    METHODS[info.name] = info


def get_method_info(name: str) -> MethodInfo:
    """Look a method up by name, with a suggestion when the name is misspelt."""
    key = name.strip().lower()
    if key not in METHODS:
        close = difflib.get_close_matches(key, METHODS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise DeepclustError(f"unknown method {name!r}{hint} Known methods: {', '.join(sorted(METHODS))}")
    return METHODS[key]


def make_method(name: str, **params: Any):
    """Build the estimator for method ``name`` with the given hyper-parameters (checked by
    :func:`check_params` first)."""
    info = get_method_info(name)
    cls = info.load_class()
    params = {**dict(info.defaults), **params}
    check_params(cls, params, method=info.name)
    return cls(**params)


def check_params(cls: type, params: dict[str, Any], *, method: str) -> None:
    """Raise :class:`DeepclustError` for a parameter that ``cls`` does not take, or whose value does
    not fit the type its ``__init__`` declares (``lr=abc`` for a float, ``epochs=1.5`` for an int)."""
    accepted = [p for p in inspect.signature(cls).parameters if p != "self"]
    try:
        hints = typing.get_type_hints(cls.__init__)
    except (NameError, TypeError):  # a plug-in's annotations that do not resolve: names are still checked
        hints = {}
    for key, value in params.items():
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise DeepclustError(f"method {method!r} has no parameter {key!r}{hint} Its parameters: "
                                 f"{', '.join(accepted)}")
        if key in hints and not _fits(value, hints[key]):
            raise DeepclustError(f"method {method!r}: {key}={value!r} is not a valid value; expected "
                                 f"{_describe(hints[key])}")


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as read from JSON or given from Python) fits the type annotation ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if hint is int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple, np.ndarray)):
            return False
        item = args[0] if args else Any
        return all(_fits(v, item) for v in value)
    if isinstance(origin or hint, type):
        return isinstance(value, origin or hint)
    return True  # an annotation this check does not model


def _describe(hint: Any) -> str:
    """``float``, ``int or None``, ``a list of int`` …: an annotation in the user's words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (list, tuple, collections.abc.Sequence):
        return f"a list of {_describe(args[0]) if args else 'values'}"
    return getattr(hint, "__name__", str(hint))


__all__ = ["METHODS", "MethodInfo", "check_params", "get_method_info", "make_method", "register_method"]
