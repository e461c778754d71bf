"""The networks as pure flax.linen modules; each submodule loads on first use
(`invfeat.models.reid.get_config(...)` after `import invfeat`)."""

import importlib
from types import ModuleType

SUBMODULES = (
    "attribute_head",
    "decoder",
    "discriminator",
    "fastreid",
    "keras_h5",
    "perceptual",
    "reid",
    "resnet",
)
__all__ = list(SUBMODULES)


def __getattr__(name: str) -> ModuleType:
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
