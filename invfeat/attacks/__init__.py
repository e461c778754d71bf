"""The attacks: attribute recognition, reconstruction (autoencoder, GAN) with the perceptual
network the threat model allows, optimisation-based inversion through a differentiable model,
their evaluation, linkability, inversion of ciphertext (irreversibility, key recovery); each
submodule loads on first use."""

from invfeat import lazy_submodules

SUBMODULES = (
    "arrays",
    "attributes",
    "ciphertext",
    "configs",
    "evaluation",
    "inversion",
    "linkability",
    "optimisation",
    "perceptual",
    "reconstruction",
    "steps",
)
__all__ = list(SUBMODULES)
__getattr__, __dir__ = lazy_submodules(__name__, SUBMODULES)
