"""invfeat: model-inversion attacks on deep features, and ShuffleBits encryption, in JAX/Flax."""

__version__ = "0.1.0"
