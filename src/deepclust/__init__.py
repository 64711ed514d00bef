"""deepclust: deep clustering behind one scikit-learn-style API.

>>> from deepclust.data import load_dataset
>>> from deepclust.methods import make_method
>>> ds = load_dataset("digits")
>>> model = make_method("kmeans", n_clusters=10).fit(ds.X)
"""

__version__ = "0.1.0"

from deepclust.errors import DeepclustError  # noqa: E402

__all__ = ["DeepclustError", "__version__"]
