"""The attacks: attribute recognition, reconstruction (autoencoder, GAN), their evaluation;
each submodule loads on first use."""

from invfeat import lazy_submodules

SUBMODULES = (
    "arrays",
    "attributes",
    "ciphertext",
    "configs",
    "evaluation",
    "reconstruction",
    "steps",
)
__all__ = list(SUBMODULES)
__getattr__, __dir__ = lazy_submodules(__name__, SUBMODULES)
