"""What the user knows: partial labels and pairwise constraints, in one shape for every method.

Python follows scikit-learn's semi-supervised convention::

    model.fit(X, y)                                   # y[i] = class id, -1 for an unlabelled sample
    model.fit(X, must_link=[(0, 5), …], cannot_link=[(0, 9), …])

Methods that use supervision derive from :class:`SemiSupervisedClusterer` and say which kinds they
take (``_takes``); the inputs are checked once (:func:`deepclust.validation.check_partial_labels`,
:func:`deepclust.validation.check_constraints`). The command line reads the same from files:

* ``--labels FILE``: a CSV of ``index,label`` rows (a header line is optional; an empty label
  leaves the sample unlabelled), or a CSV with one column and one row per sample, empty cells for
  unlabelled samples;
* ``--constraints FILE``: a CSV of ``i,j,must`` / ``i,j,cannot`` rows (header optional).

Scores of a supervised run are computed only on the samples the user said nothing about
(:func:`scored_mask`), so that what was given is never counted as found.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from deepclust.base import BaseClusterer
from deepclust.data.core import encode_labels
from deepclust.errors import DeepclustError
from deepclust.validation import ArrayLike, check_constraints, check_n_clusters, check_partial_labels

KINDS = ("labels", "constraints")


@dataclass
class Supervision:
    """Partial labels (int64, -1 = unlabelled, or None) and must-/cannot-link pairs ((m, 2) int64)."""

    y: np.ndarray | None = None
    must_link: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    cannot_link: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    class_names: list[str] | None = None  # the label values of a labels file, by class id

    @property
    def n_labelled(self) -> int:
        return 0 if self.y is None else int((self.y >= 0).sum())

    @property
    def kinds(self) -> list[str]:
        """The kinds given: "labels" and/or "constraints"."""
        return [k for k, given in zip(KINDS, (self.n_labelled > 0, len(self.must_link) + len(self.cannot_link) > 0))
                if given]

    def fit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``fit`` of a :class:`SemiSupervisedClusterer`."""
        kw: dict[str, Any] = {}
        if self.n_labelled:
            kw["y"] = self.y
        if len(self.must_link):
            kw["must_link"] = self.must_link
        if len(self.cannot_link):
            kw["cannot_link"] = self.cannot_link
        return kw

    def violations(self, labels: np.ndarray) -> dict[str, int]:
        """How many must-links ``labels`` split and how many cannot-links it joins."""
        lab = np.asarray(labels)
        return {"must_link": int((lab[self.must_link[:, 0]] != lab[self.must_link[:, 1]]).sum()),
                "cannot_link": int((lab[self.cannot_link[:, 0]] == lab[self.cannot_link[:, 1]]).sum())}

    def describe(self) -> dict[str, int]:
        """Counts for metrics.json and the report."""
        return {"n_labelled": self.n_labelled, "n_classes_labelled": 0 if self.y is None else
                int(len(np.unique(self.y[self.y >= 0]))),
                "n_must_link": int(len(self.must_link)), "n_cannot_link": int(len(self.cannot_link))}


def scored_mask(supervision: Supervision | None, n_samples: int) -> np.ndarray:
    """True for the samples a score may count: those neither labelled nor named by a constraint."""
    mask = np.ones(n_samples, dtype=bool)
    if supervision is None:
        return mask
    if supervision.y is not None:
        mask &= supervision.y < 0
    for pairs in (supervision.must_link, supervision.cannot_link):
        mask[pairs.ravel()] = False
    return mask


class SemiSupervisedClusterer(BaseClusterer):
    """A clusterer whose ``fit`` also takes partial labels ``y`` (-1 = unlabelled) and/or must-link and
    cannot-link pairs. With none given it clusters without supervision. Subclasses set ``_takes``
    and read ``self._supervision`` (a :class:`Supervision`) in ``_fit``.

    Fitted attributes: ``n_labelled_``, ``n_must_link_``, ``n_cannot_link_``.
    """

    _takes: ClassVar[tuple[str, ...]] = KINDS
    #: True for a method that models errors in the constraints: contradictions among them are then accepted
    _noisy_constraints: ClassVar[bool] = False

    def fit(self, X: ArrayLike, y: Any = None, *, must_link: Any = None, cannot_link: Any = None):
        """Cluster ``X`` using partial labels ``y`` (class ids, -1 for unlabelled samples) and/or
        ``must_link`` / ``cannot_link`` lists of (i, j) sample-index pairs."""
        X = self._validate_input(X)
        # a method that finds k itself takes n_clusters=None (then any number of labelled classes)
        k = None if self.n_clusters is None and not self._requires_n_clusters else \
            check_n_clusters(self.n_clusters, X.shape[0])
        yy = None if y is None else check_partial_labels(y, X.shape[0], k)
        ml, cl = check_constraints(must_link, cannot_link, X.shape[0], yy, noisy=self._noisy_constraints)
        sup = Supervision(yy, ml, cl)
        refuse_supervision(type(self).__name__, sup.kinds, self._takes)
        self._supervision = sup
        self.n_labelled_ = sup.n_labelled
        self.n_must_link_ = int(len(ml))
        self.n_cannot_link_ = int(len(cl))
        try:
            return super().fit(X)
        finally:
            del self._supervision  # not part of the fitted model (nor of a pickle)

    def fit_predict(self, X: ArrayLike, y: Any = None, **kwargs: Any) -> np.ndarray:
        return self.fit(X, y, **kwargs).labels_


def refuse_supervision(method: str, kinds: list[str], takes: tuple[str, ...]) -> None:
    """One clear line when ``method`` is given kinds of supervision ("labels", "constraints") it does not use."""
    wrong = [k for k in kinds if k not in takes]
    if not wrong:
        return
    users = {"labels": "few-labels, seeded-kmeans, constrained-kmeans, transductive-fewshot, tim, umap-spreading, "
                       "cluster-then-label, ncd-kmeans, ncd-spectral, pbn, gpc",
             "constraints": "cop-kmeans, pckmeans, clusternet, dcc"}
    raise DeepclustError(f"{method} does not use {' or '.join(wrong)}; methods that do: "
                         + "; ".join(f"{k}: {users[k]}" for k in wrong))


def takes_supervision(cls: type) -> tuple[str, ...]:
    """The kinds of supervision a method class uses (none for plain clusterers)."""
    return cls._takes if issubclass(cls, SemiSupervisedClusterer) else ()


# ---------------------------------------------------------------------------------------------- files
def _rows(path: Path, what: str, keep_blank: bool = False) -> list[list[str]]:
    """The CSV rows of ``path``, cells stripped; blank lines left out unless ``keep_blank`` (then ``[""]``)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [[c.strip() for c in row] for row in csv.reader(fh)]
    except FileNotFoundError:
        raise DeepclustError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DeepclustError(f"cannot read the {what} file {path}: {exc}") from None
    if not any(any(r) for r in rows):
        raise DeepclustError(f"the {what} file {path} is empty")
    return [r if any(r) else [""] for r in rows] if keep_blank else [r for r in rows if any(r)]


def _index(text: str, path: Path, line: int, n_samples: int) -> int:
    try:
        i = int(text)
    except ValueError:
        raise DeepclustError(f"{path} row {line}: {text!r} is not a sample index (a whole number)") from None
    if not 0 <= i < n_samples:
        raise DeepclustError(f"{path} row {line}: sample index {i} is outside 0 … {n_samples - 1} "
                             f"(the data have {n_samples} samples)")
    return i


def _is_header(row: list[str]) -> bool:
    try:
        int(row[0])
        return False
    except ValueError:
        return True


def read_labels_file(path: str | Path, n_samples: int) -> tuple[np.ndarray, list[str]]:
    """Partial labels from a CSV: ``index,label`` rows, or one column with a row per sample (empty =
    unlabelled). Returns (y with -1 for unlabelled samples, the label values by class id)."""
    path = Path(path)
    every_row = _rows(path, "labels", keep_blank=True)
    rows = [r for r in every_row if any(r)]
    if {len(r) for r in rows} == {1}:  # one column, a row per sample (an optional header line)
        cells = [r[0] for r in every_row]
        if len(cells) == n_samples + 1:
            cells = cells[1:]
        elif len(cells) != n_samples:
            raise DeepclustError(f"{path} has one column of {len(cells)} rows but the data have {n_samples} samples; "
                                 "give one row per sample (empty for unlabelled) or index,label rows")
        return partial_labels_from_cells(cells, str(path))
    cells = [""] * n_samples
    seen = set()
    for line, row in enumerate(rows[1 if _is_header(rows[0]) else 0:], 2 if _is_header(rows[0]) else 1):
        if len(row) != 2:
            raise DeepclustError(f"{path} row {line} has {len(row)} fields; expected index,label")
        i = _index(row[0], path, line, n_samples)
        if i in seen:
            raise DeepclustError(f"{path} row {line}: sample {i} is labelled twice")
        seen.add(i)
        cells[i] = row[1]
    return partial_labels_from_cells(cells, str(path))


def partial_labels_from_cells(cells: Any, source: str) -> tuple[np.ndarray, list[str]]:
    """Partial labels from one cell per sample (empty, None or NaN = unlabelled; a table column's empty
    cells arrive as NaN, or as the text "nan" in a column of strings): (y, label values)."""
    texts = []
    for v in list(cells):
        if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)) or str(v).strip().lower() == "nan":
            v = ""
        elif isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)  # a numeric column with empty cells is read as floats
        texts.append(str(v).strip())
    idx = [i for i, c in enumerate(texts) if c]
    if not idx:
        raise DeepclustError(f"{source} labels no sample")
    codes, names = encode_labels([texts[i] for i in idx])
    y = np.full(len(texts), -1, dtype=np.int64)
    y[np.asarray(idx)] = codes
    return y, names


def read_constraints_file(path: str | Path, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Must-link and cannot-link pairs from a CSV of ``i,j,must|cannot`` rows (header optional)."""
    path = Path(path)
    rows = _rows(path, "constraints")
    start = 1 if _is_header(rows[0]) else 0
    pairs: dict[str, list[tuple[int, int]]] = {"must": [], "cannot": []}
    for line, row in enumerate(rows[start:], start + 1):
        if len(row) != 3:
            raise DeepclustError(f"{path} row {line} has {len(row)} fields; expected i,j,must or i,j,cannot")
        kind = row[2].lower()
        if kind not in pairs:
            raise DeepclustError(f"{path} row {line}: {row[2]!r} is not a constraint kind; write must or cannot")
        pairs[kind].append((_index(row[0], path, line, n_samples), _index(row[1], path, line, n_samples)))
    as_array = lambda p: np.asarray(p, dtype=np.int64).reshape(-1, 2)  # noqa: E731
    return as_array(pairs["must"]), as_array(pairs["cannot"])


def read_supervision(n_samples: int, n_clusters: int | None, labels: str | Path | None = None,
                     constraints: str | Path | None = None, labels_cells: tuple[str, Any] | None = None,
                     noisy: bool = False) -> Supervision | None:
    """The :class:`Supervision` of ``--labels`` / ``--constraints`` files, or of a column of the data
    (``labels_cells``: its name and one cell per sample, empty = unlabelled), checked against the
    data and k (None when none is given); ``noisy``: contradicting constraints are accepted (see
    :func:`deepclust.validation.check_constraints`)."""
    if labels is None and constraints is None and labels_cells is None:
        return None
    if labels is not None and labels_cells is not None:
        raise DeepclustError("give partial labels either in a file (--labels) or in a column (--labels-column), "
                             "not both")
    y, names, source = None, None, None
    if labels is not None:
        (y, names), source = read_labels_file(labels, n_samples), f"--labels {labels}"
    elif labels_cells is not None:
        (y, names), source = partial_labels_from_cells(labels_cells[1], f"--labels-column {labels_cells[0]!r}"), \
            f"--labels-column {labels_cells[0]!r}"
    if y is not None:
        y = check_partial_labels(y, n_samples, n_clusters, name=source)
    ml, cl = read_constraints_file(constraints, n_samples) if constraints is not None else (None, None)
    ml, cl = check_constraints(ml, cl, n_samples, y, noisy=noisy)
    return Supervision(y, ml, cl, class_names=names)
