"""Encoders: networks that map inputs to the embedding a clustering head works on."""

from deepclust.encoders.autoencoders import AEOutput, ConvAutoencoder, MLPAutoencoder

__all__ = ["AEOutput", "ConvAutoencoder", "MLPAutoencoder"]
