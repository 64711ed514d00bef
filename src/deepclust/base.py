"""The one estimator API shared by every method, classical or deep.

Follows scikit-learn's conventions: hyper-parameters are stored unchanged in ``__init__``,
``fit`` learns and returns ``self``, learned state ends in ``_``. Subclasses implement
:meth:`_fit` and :meth:`_predict_proba` (or :meth:`_predict`), and list what to save in
``_saved_arrays`` / ``_saved_values`` (or override :meth:`_get_state` / :meth:`_set_state`).

Saving writes a folder with ``model.safetensors`` (all arrays and network weights) and
``config.json`` (class, hyper-parameters, small fitted values, library versions); loading it
gives identical predictions.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils import TransformerTags
from sklearn.utils.metaestimators import available_if

from deepclust.errors import DeepclustError
from deepclust.runtime import versions
from deepclust.validation import ArrayLike, as_float_array, check_n_clusters

MODEL_FORMAT = "deepclust-model"
MODEL_FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class NotFittedError(DeepclustError, SklearnNotFittedError):
    """A model used before ``fit``: a :class:`DeepclustError` for users, and scikit-learn's
    ``NotFittedError`` for tools that look for it."""


class BaseClusterer(ClusterMixin, BaseEstimator):
    """Base class of every deepclust clusterer.

    Subclasses set ``n_clusters``, ``device`` and ``random_state`` in ``__init__`` and implement
    ``_fit(X)`` on a validated float32 array.
    """

    #: array attributes written to safetensors on save
    _saved_arrays: ClassVar[tuple[str, ...]] = ("labels_",)
    #: JSON-serialisable fitted attributes written to config.json on save
    _saved_values: ClassVar[tuple[str, ...]] = ()
    #: number of array dimensions accepted (2 = vectors only; 4 = images too)
    _max_input_dims: ClassVar[int] = 4
    #: False for methods that find the number of clusters themselves (e.g. HDBSCAN): fit then
    #: does not check ``n_clusters`` against the data
    _requires_n_clusters: ClassVar[bool] = True
    #: fewest samples ``fit`` accepts (2 for methods that need neighbours or batch statistics)
    _min_samples: ClassVar[int] = 1
    #: torch modules (attribute names) whose weights are saved with the model; loading rebuilds
    #: them with :meth:`_build_networks` and then loads the weights
    _networks: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ public API
    def fit(self, X: ArrayLike, y: Any = None) -> "BaseClusterer":
        """Learn the clustering of ``X``; ``y`` is ignored (present for Pipeline compatibility)."""
        X = self._validate_input(X)
        if X.shape[0] < self._min_samples:
            raise DeepclustError(f"{type(self).__name__} needs at least {self._min_samples} samples, "
                                 f"got n_samples={X.shape[0]}")
        if self._requires_n_clusters:
            check_n_clusters(self.n_clusters, X.shape[0])
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        self.input_shape_ = tuple(int(s) for s in X.shape[1:])
        self._fit(X)
        return self

    def fit_predict(self, X: ArrayLike, y: Any = None, **kwargs: Any) -> np.ndarray:
        """Fit and return the cluster index of every sample."""
        return self.fit(X).labels_

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Cluster index of every sample of ``X`` under the fitted model."""
        X = self._validate_new_input(X)
        return np.asarray(self._predict(X), dtype=np.int64)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Soft assignment of every sample to every cluster (rows sum to 1)."""
        X = self._validate_new_input(X)
        return np.asarray(self._predict_proba(X), dtype=np.float32)

    @available_if(lambda self: self._has_transform())
    def transform(self, X: ArrayLike) -> np.ndarray:
        """Embedding (or distance space) in which the clustering is made."""
        X = self._validate_new_input(X)
        return np.asarray(self._transform(X), dtype=np.float32)

    @available_if(lambda self: self._has_transform())
    def fit_transform(self, X: ArrayLike, y: Any = None) -> np.ndarray:
        """Fit and return the embedding of ``X`` (as ``fit(X).transform(X)``)."""
        return self.fit(X).transform(X)

    def __sklearn_tags__(self):
        """scikit-learn's description of this estimator: a clusterer; a transformer (float32 out) when it
        has an embedding or distance space."""
        tags = super().__sklearn_tags__()
        if self._has_transform():
            tags.transformer_tags = TransformerTags(preserves_dtype=["float32"])
        return tags

    def confidence(self, X: ArrayLike) -> np.ndarray:
        """Probability of the assigned cluster for every sample."""
        return self.predict_proba(X).max(axis=1)

    # ------------------------------------------------------------------ for subclasses
    def _fit(self, X: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        labels = self._predict(X)
        proba = np.zeros((len(labels), self.n_clusters_), dtype=np.float32)
        proba[np.arange(len(labels)), labels] = 1.0
        return proba

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._predict_proba(X).argmax(axis=1)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def _has_transform(cls) -> bool:
        """Whether the method implements :meth:`_transform` (else ``transform`` is not an attribute)."""
        return cls._transform is not BaseClusterer._transform

    @property
    def n_clusters_(self) -> int:
        return int(self.n_clusters)

    def _validate_input(self, X: ArrayLike) -> np.ndarray:
        return as_float_array(X, max_dims=self._max_input_dims)

    def _validate_new_input(self, X: ArrayLike) -> np.ndarray:
        self._check_is_fitted()
        X = self._validate_input(X)
        self._check_n_features(X)
        return X

    def _check_n_features(self, X: np.ndarray) -> None:
        shape = tuple(int(s) for s in X.shape[1:])
        if int(np.prod(shape)) != self.n_features_in_:
            raise DeepclustError(
                f"X has {int(np.prod(shape))} features, but {type(self).__name__} is expecting {self.n_features_in_} "
                f"features as input (samples of shape {shape}; the model was fitted on shape {self.input_shape_})"
            )

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")

    # ------------------------------------------------------------------ save / load
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays for safetensors and JSON values for config.json that describe the fitted model."""
        arrays = {name: np.ascontiguousarray(_to_numpy(getattr(self, name))) for name in self._saved_arrays
                  if getattr(self, name, None) is not None}
        values = {name: _jsonable(getattr(self, name)) for name in self._saved_values if hasattr(self, name)}
        values["n_features_in_"] = self.n_features_in_
        values["input_shape_"] = list(self.input_shape_)
        for attr in self._networks:
            for name, tensor in getattr(self, attr).state_dict().items():
                arrays[f"{attr}.{name}"] = tensor.detach().cpu().numpy()
        return arrays, values

    def _set_state(self, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> None:
        prefixes = tuple(f"{attr}." for attr in self._networks)
        nets = {k: v for k, v in arrays.items() if prefixes and k.startswith(prefixes)}
        for name, arr in arrays.items():
            if name not in nets:
                setattr(self, name, arr)
        for name, value in values.items():
            setattr(self, name, tuple(value) if name == "input_shape_" else value)
        if not self._networks:
            return
        from deepclust.device import resolve_device

        self._build_networks(tuple(self.input_shape_))
        dev = resolve_device(getattr(self, "device", "auto"))
        for attr in self._networks:
            module = getattr(self, attr)
            module.load_state_dict({k[len(attr) + 1:]: torch.from_numpy(np.array(v)) for k, v in nets.items()
                                    if k.startswith(f"{attr}.")})
            module.to(dev).eval()

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:  # pragma: no cover - abstract
        """Re-create the untrained networks listed in ``_networks`` for inputs of ``input_shape``."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to the folder ``path`` (created if needed) and return it."""
        self._check_is_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays, values = self._get_state()
        save_file(arrays, str(path / WEIGHTS_FILE))
        config = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "params": {k: _jsonable(v) for k, v in self.get_params(deep=False).items()},
            "fitted": values,
            "versions": versions(),
        }
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        return path


def load_model(path: str | Path) -> BaseClusterer:
    """Load a model saved with :meth:`BaseClusterer.save`."""
    path = Path(path)
    config_path = path / CONFIG_FILE
    if not config_path.is_file() or not (path / WEIGHTS_FILE).is_file():
        raise DeepclustError(f"{path} is not a saved deepclust model (expected {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DeepclustError(f"could not read {config_path}: {exc}") from exc
    if config.get("format") != MODEL_FORMAT:
        raise DeepclustError(f"{config_path} is not a deepclust model config")
    module_name, _, qualname = config["class"].partition(":")
    cls = getattr(importlib.import_module(module_name), qualname)
    model = cls(**config["params"])
    model._set_state(load_file(str(path / WEIGHTS_FILE)), config["fitted"])
    return model


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.device):
        return str(value)
    return value
