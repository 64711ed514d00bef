"""Every method of the catalogue passes scikit-learn's estimator checks (``check_estimator``).

Deep methods run with a tiny schedule (a few epochs, nets of a few units) so the checks stay
fast; the checks look at the API (cloning, parameters, input validation, n_features_in_,
not-fitted errors, dtypes, sparse and complex input, pickling, fit_predict == labels_ ...) and, in
``check_clustering``, that three well-separated blobs are found (ARI > 0.4).

We skip no check: every method passes all of them. (scikit-learn itself skips its array-API
checks unless SCIPY_ARRAY_API=1 is set; deepclust computes in NumPy/torch, not the array API.)
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from deepclust.errors import DeepclustError
from deepclust.methods import METHODS, make_method
from deepclust.supervision import SemiSupervisedClusterer
from deepclust.validation import as_float_array

_AE = dict(hidden_dims=(8, 8, 16), embedding_dim=2, pretrain_epochs=2, batch_size=16, device="cpu")
_SELF_LABEL = dict(epochs=2, device="cpu")
#: the tiny settings of each deep method (the classical engines run with their defaults)
TINY: dict[str, dict] = {
    "ae-kmeans": dict(_AE, kmeans_n_init=1),
    "dec": dict(_AE, kmeans_n_init=1, update_interval=5, max_iter=10),
    "idec": dict(_AE, kmeans_n_init=1, update_interval=5, max_iter=10),
    "n2d": dict(_AE, n_neighbors=5, pretrain_epochs=30),  # 2 epochs do not separate the three blobs
    "depict": dict(pretrain_epochs=2, warmup_epochs=1, cluster_epochs=1, batch_size=16, channels=(4, 4),
                   hidden_dims=(8, 8, 16), kmeans_n_init=1, device="cpu"),
    "sela": dict(_SELF_LABEL, n_label_updates=1, n_neighbors=5),
    "scan": dict(_SELF_LABEL, selflabel_epochs=1, n_neighbors=5, n_heads=1, batch_size=16),
    "deepcluster": dict(_SELF_LABEL, hidden_dims=(8, 8), feature_dim=8, pca_dim=4),
    "clusterfit": dict(_SELF_LABEL, hidden_dims=(8, 8), feature_dim=8, pca_dim=4),
    "p2ot": dict(_SELF_LABEL, n_label_updates=1, n_neighbors=5),
    "sp2ot": dict(_SELF_LABEL, n_label_updates=1, n_neighbors=5, mm_iters=2),
    "tell": dict(epochs=2, batch_size=16, device="cpu"),
    "deepdpm": dict(init_k=3, normalize=False, epochs=12, start_params=2, start_subclusters=3, start_moves=4, move_every=3,
                    freeze_epochs=1, batch_size=16, hidden_dim=8, device="cpu"),
    "cpp": dict(_SELF_LABEL, hidden_dims=(8,), out_dim=4, batch_size=16),
    "mlc": dict(_SELF_LABEL, hidden_dims=(8,), out_dim=4, batch_size=16, warmup_epochs=1),
    "pbn": dict(epochs=10, batch_size=16, latent_dim=4, k_max=4, kmeans_n_init=2, device="cpu"),
    "clusternet": dict(_AE, max_iter=10, update_interval=5),
    "dcc": dict(hidden_dims=(16,), batch_size=16, volume_batch=16, steps_per_round=20, max_rounds=5, device="cpu"),
}
#: methods that learn from pairwise constraints only (they refuse to fit without): their checks run with
#: pairs found in X itself, each sample must-linked to its nearest neighbour and cannot-linked to its farthest
NEEDS_PAIRS = {"DCC"}
#: classical engines whose defaults need data larger than scikit-learn's checks use
SMALL: dict[str, dict] = {"umap": dict(n_neighbors=5, n_components=2),
                          "umap-spreading": dict(n_neighbors=5, n_components=2),
                          "few-labels": dict(n_neighbors=5, n_components=2), "ncd-kmeans": dict(k_max=4, n_init=2),
                          "cluster-then-label": dict(params=dict(n_neighbors=5, n_components=2), n_neighbors=5),
                          "ncd-spectral": dict(k_max=4, n_init=2)}


def _checked_as_clusterer(estimator):
    """scikit-learn's checks pass ``y`` as targets (often more classes than ``n_clusters``, or strings);
    a semi-supervised method reads ``y`` as partial labels and refuses those. Its checks therefore run
    on a subclass whose ``fit`` leaves ``y`` out: every other property (parameters, input checks,
    pickling, predict, transform ...) is checked as for the other methods; tests/test_semisupervised.py
    checks the supervised ``fit``."""
    cls = type(estimator)
    if not issubclass(cls, SemiSupervisedClusterer):
        return estimator
    name = f"{cls.__name__}WithoutY"
    if name not in globals():
        fit = (lambda self, X, y=None: cls.fit(self, X, **_pairs_in(X))) if cls.__name__ in NEEDS_PAIRS else \
            (lambda self, X, y=None: cls.fit(self, X))
        globals()[name] = type(name, (cls,), {"fit": fit, "__module__": __name__, "__qualname__": name})
    return globals()[name](**estimator.get_params())


def _pairs_in(X) -> dict:
    """Label-free must-links (nearest neighbour) and cannot-links (farthest sample) of valid X; nothing for
    input the method must refuse itself."""
    try:
        flat = as_float_array(X, max_dims=2)
    except DeepclustError:
        return {}
    if len(flat) < 2:
        return {}
    d = ((flat[:, None] - flat[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    near = d.argmin(1)
    np.fill_diagonal(d, -np.inf)
    idx = np.arange(len(flat))
    return {"must_link": np.c_[idx, near], "cannot_link": np.c_[idx, d.argmax(1)]}


ESTIMATORS = [_checked_as_clusterer(make_method(name, **TINY.get(name, SMALL.get(name, {})))) for name in METHODS]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_method_is_checked():
    assert sorted(type(e).__name__.removesuffix("WithoutY") for e in ESTIMATORS) == sorted(
        info.target.partition(":")[2] for info in METHODS.values())
    assert set(TINY) == {name for name, info in METHODS.items() if info.deep}


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS[:1] + [e for e in ESTIMATORS if type(e).__name__ == "DEC"],
                         ids=lambda e: type(e).__name__)
def test_not_fitted_error_is_both_ours_and_sklearns(estimator):
    with pytest.raises(DeepclustError, match="not fitted") as info:
        clone(estimator).predict(np.zeros((2, 3)))
    assert isinstance(info.value, SklearnNotFittedError)


def test_transform_only_where_the_method_has_one():
    by_name = dict(zip(METHODS, ESTIMATORS))
    assert not hasattr(by_name["gmm"], "transform") and not hasattr(by_name["hdbscan"], "transform")
    assert hasattr(by_name["kmeans"], "transform") and hasattr(by_name["dec"], "transform")
