"""The one estimator API shared by every method, classical or deep.

Follows scikit-learn's conventions: hyper-parameters are stored unchanged in ``__init__``,
``fit`` learns and returns ``self``, learned state ends in ``_``. Subclasses implement
:meth:`_fit` and :meth:`_predict_proba` (or :meth:`_predict`), and list what to save in
``_saved_arrays`` / ``_saved_values`` (or override :meth:`_get_state` / :meth:`_set_state`).

Saving writes a folder with ``model.safetensors`` (all arrays and network weights) and
``config.json`` (method, hyper-parameters, small fitted values, the names and shapes of the
arrays, library versions); loading it gives identical predictions.

Loading never runs code from the folder: the class must be one of deepclust's registered methods
(:data:`deepclust.methods.METHODS`), every hyper-parameter must be one the class takes, of the
type its signature declares, and weights are read only from safetensors (no pickle). A damaged or
hostile folder gives one :class:`DeepclustError` naming the file and the problem.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.utils import TransformerTags
from sklearn.utils.metaestimators import available_if

from deepclust.errors import DeepclustError
from deepclust.runtime import versions
from deepclust.validation import ArrayLike, as_float_array, check_n_clusters

MODEL_FORMAT = "deepclust-model"
MODEL_FORMAT_VERSION = 2  # 2: config.json lists the saved arrays ("arrays"); 1 is still read
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: a larger config.json is refused unread (real ones are a few kB)
MAX_CONFIG_BYTES = 64 << 20
#: the most items in one JSON list or object of a config, and the deepest nesting
MAX_JSON_ITEMS = 1_000_000
MAX_JSON_DEPTH = 4


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
    #: True for deep methods that train data-parallel under torchrun, each rank on a shard
    #: (:mod:`deepclust.distributed`); the others refuse to run there
    _data_parallel: ClassVar[bool] = False

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

        self._check_network_arrays(nets)
        self._build_networks(tuple(self.input_shape_))
        dev = resolve_device(getattr(self, "device", "auto"))
        for attr in self._networks:
            module = getattr(self, attr)
            module.load_state_dict({k[len(attr) + 1:]: torch.from_numpy(np.array(v)) for k, v in nets.items()
                                    if k.startswith(f"{attr}.")})
            module.to(dev).eval()

    def _check_network_arrays(self, nets: dict[str, np.ndarray]) -> None:
        """Raise unless ``nets`` holds exactly the tensors, of the right shapes, of the networks this
        model's parameters describe; the networks are built on the meta device (shapes, no memory),
        so that a config cannot make loading allocate huge networks."""
        with torch.device("meta"):
            self._build_networks(tuple(self.input_shape_))
        expected = {f"{attr}.{name}": tuple(t.shape) for attr in self._networks
                    for name, t in getattr(self, attr).state_dict().items()}
        got = {name: tuple(arr.shape) for name, arr in nets.items()}
        problems = [f"{label}: {', '.join(sorted(names)[:5])}" for label, names in (
            ("missing tensors", expected.keys() - got.keys()), ("unexpected tensors", got.keys() - expected.keys()),
            ("tensors of the wrong shape", {n for n in expected.keys() & got.keys() if expected[n] != got[n]}))
            if names]
        if problems:
            raise DeepclustError("the network weights do not match the saved hyper-parameters (" + "; ".join(problems) + ")")

    def _build_networks(self, input_shape: tuple[int, ...]) -> None:  # pragma: no cover - abstract
        """Re-create the untrained networks listed in ``_networks`` for inputs of ``input_shape``."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to the folder ``path`` (created if needed) and return it."""
        self._check_is_fitted()
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise DeepclustError(f"cannot save the model to {path}: it is a file; give a folder")
        path.mkdir(parents=True, exist_ok=True)
        arrays, values = self._get_state()
        save_file(arrays, str(path / WEIGHTS_FILE))
        config = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "class": f"{type(self).__module__}:{type(self).__qualname__}",
            "params": {k: _jsonable(v) for k, v in self.get_params(deep=False).items()},
            "fitted": values,
            "arrays": {name: {"shape": list(arr.shape), "dtype": str(arr.dtype)} for name, arr in arrays.items()},
            "versions": versions(),
        }
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        return path


def load_model(path: str | Path) -> BaseClusterer:
    """Load a model saved with :meth:`BaseClusterer.save`, safely (see the module notes)."""
    path = Path(path)
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not path.is_dir():
        raise DeepclustError(f"{path} is not a saved deepclust model: it is not a folder" if path.exists()
                             else f"{path} does not exist")
    for file in (config_path, weights_path):
        if not file.is_file():
            raise DeepclustError(f"{path} is not a saved deepclust model: {file.name} is missing")
    config = _read_config(config_path)
    cls = _registered_class(config, config_path)
    params = _checked_params(cls, config.get("params", {}), config_path)
    fitted = _checked_fitted(cls, config.get("fitted"), config_path)
    try:
        arrays = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DeepclustError(f"{weights_path} is not a readable safetensors file ({exc})") from None
    _check_arrays(cls, arrays, config.get("arrays"), weights_path)
    model = cls(**params)
    try:
        model._set_state(arrays, fitted)
    except DeepclustError as exc:
        raise DeepclustError(f"{weights_path}: {exc}") from None
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:
        raise DeepclustError(f"{path} could not be loaded: {exc}") from None
    return model


def _read_config(config_path: Path) -> dict[str, Any]:
    """config.json as a dict of the deepclust model format, or a DeepclustError naming the problem."""
    try:
        if config_path.stat().st_size > MAX_CONFIG_BYTES:
            raise DeepclustError(f"{config_path} is larger than {MAX_CONFIG_BYTES >> 20} MiB; not a deepclust model config")
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, DeepclustError):
            raise
        raise DeepclustError(f"could not read {config_path}: {exc}") from None
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise DeepclustError(f"{config_path} is not a deepclust model config (no \"format\": \"{MODEL_FORMAT}\")")
    version = config.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MODEL_FORMAT_VERSION:
        raise DeepclustError(f"{config_path} has format_version {version!r}; this deepclust reads versions "
                             f"1 to {MODEL_FORMAT_VERSION} (a newer deepclust may have saved it)")
    return config


def _registered_class(config: dict[str, Any], config_path: Path) -> type[BaseClusterer]:
    """The class named in the config, if it is one of deepclust's registered methods; nothing else is imported."""
    from deepclust.methods import METHODS

    name = config.get("class")
    if not isinstance(name, str):
        raise DeepclustError(f"{config_path} does not say which method the model is (no \"class\")")
    by_target = {info.target: info for info in METHODS.values()}
    if name not in by_target:
        raise DeepclustError(f"{config_path} names the class {name!r}, which is not a deepclust method; only "
                             "deepclust's own methods are loaded (see `deepclust methods`)")
    return by_target[name].load_class()


def _checked_params(cls: type, params: Any, config_path: Path) -> dict[str, Any]:
    """The hyper-parameters, each one that ``cls`` takes and of the type its signature declares."""
    if not isinstance(params, dict):
        raise DeepclustError(f"{config_path}: \"params\" must be a JSON object")
    signature = inspect.signature(cls.__init__)
    hints = typing.get_type_hints(cls.__init__)
    for name, value in params.items():
        if name not in signature.parameters or name == "self":
            raise DeepclustError(f"{config_path}: {cls.__name__} has no parameter {name!r}")
        if not _fits_type(value, hints.get(name, Any)):
            raise DeepclustError(f"{config_path}: parameter {name!r} = {_short(value)} is not of type "
                                 f"{_type_name(hints.get(name, Any))}")
    return params


def _checked_fitted(cls: type[BaseClusterer], fitted: Any, config_path: Path) -> dict[str, Any]:
    """The fitted values: only the ones ``cls`` saves, plain JSON, with a consistent input shape."""
    if not isinstance(fitted, dict):
        raise DeepclustError(f"{config_path}: \"fitted\" must be a JSON object")
    allowed = {*cls._saved_values, "n_features_in_", "input_shape_"}
    for name, value in fitted.items():
        if name not in allowed:
            raise DeepclustError(f"{config_path}: {cls.__name__} saves no fitted value {name!r}")
        if not _fits_type(value, Any):
            raise DeepclustError(f"{config_path}: fitted value {name!r} is not plain JSON of at most "
                                 f"{MAX_JSON_DEPTH} levels and {MAX_JSON_ITEMS:,} items")
    shape, n_features = fitted.get("input_shape_"), fitted.get("n_features_in_")
    if not (_fits_type(shape, list[int]) and 1 <= len(shape) <= 3 and all(s >= 1 for s in shape)
            and _fits_type(n_features, int) and int(np.prod(shape, dtype=object)) == n_features):
        raise DeepclustError(f"{config_path}: the fitted input shape {_short(shape)} and number of features "
                             f"{_short(n_features)} are missing or do not agree")
    return fitted


def _check_arrays(cls: type[BaseClusterer], arrays: dict[str, np.ndarray], listed: Any, weights_path: Path) -> None:
    """Every array is one ``cls`` saves, and (format 2) exactly those listed in config.json, with their shapes."""
    prefixes = tuple(f"{attr}." for attr in cls._networks)
    unknown = sorted(n for n in arrays if n not in cls._saved_arrays and not (prefixes and n.startswith(prefixes)))
    if unknown:
        raise DeepclustError(f"{weights_path} holds arrays that {cls.__name__} does not save: {', '.join(unknown[:5])}")
    if listed is None:  # format 1 did not list the arrays
        return
    if not isinstance(listed, dict):
        raise DeepclustError(f"{weights_path.parent / CONFIG_FILE}: \"arrays\" must be a JSON object")
    missing = sorted(listed.keys() - arrays.keys())
    extra = sorted(arrays.keys() - listed.keys())
    wrong = sorted(n for n in listed.keys() & arrays.keys() if not isinstance(listed[n], dict)
                   or listed[n].get("shape") != list(arrays[n].shape) or listed[n].get("dtype") != str(arrays[n].dtype))
    problems = [f"{label}: {', '.join(names[:5])}" for label, names in (
        ("missing arrays", missing), ("arrays not in config.json", extra), ("arrays of the wrong shape or type", wrong))
        if names]
    if problems:
        raise DeepclustError(f"{weights_path} does not match {CONFIG_FILE} (" + "; ".join(problems) + ")")


def _fits_type(value: Any, hint: Any, depth: int = 0) -> bool:
    """True when the JSON ``value`` fits the annotation ``hint`` (bool, int, float, str, None, unions,
    sequences, ``dict[str, X]``, ``Any``), with at most MAX_JSON_DEPTH levels and MAX_JSON_ITEMS items."""
    if depth > MAX_JSON_DEPTH:
        return False
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits_type(value, a, depth) for a in args)
    if hint is Any:
        if isinstance(value, list):
            return _fits_type(value, list[Any], depth)
        if isinstance(value, dict):
            return _fits_type(value, dict[str, Any], depth)
        return value is None or isinstance(value, (bool, int, float, str))
    if hint is None or hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, list) or len(value) > MAX_JSON_ITEMS:
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed length, e.g. tuple[int, int]
            return len(value) == len(args) and all(_fits_type(v, a, depth + 1) for v, a in zip(value, args))
        return all(_fits_type(v, args[0] if args else Any, depth + 1) for v in value)
    if origin in (dict, collections.abc.Mapping):
        item = args[1] if len(args) == 2 else Any
        return (isinstance(value, dict) and len(value) <= MAX_JSON_ITEMS
                and all(isinstance(k, str) and _fits_type(v, item, depth + 1) for k, v in value.items()))
    return False


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


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
