"""Kernel initialisers by name: Flax's default and the Keras default of the published scripts."""

from collections.abc import Callable
from typing import Any

import flax.linen as nn

KERNEL_INITIALIZERS: dict[str, Callable[..., Any]] = {
    "lecun_normal": nn.initializers.lecun_normal(),  # Flax's Dense and Conv default
    "glorot_uniform": nn.initializers.glorot_uniform(),  # Keras' default (fans x receptive field)
}


def kernel_initializer(name: str) -> Callable[..., Any]:
    """The initialiser called `name` (a key of KERNEL_INITIALIZERS); biases stay zero in both."""
    if name not in KERNEL_INITIALIZERS:
        raise ValueError(
            f"unknown kernel initialiser {name!r}; choose one of {list(KERNEL_INITIALIZERS)}"
        )
    return KERNEL_INITIALIZERS[name]
