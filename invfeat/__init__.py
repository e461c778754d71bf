"""invfeat: model-inversion attacks on deep features, and ShuffleBits encryption, in JAX/Flax.

Submodules load on first use (`import invfeat; invfeat.losses.cosine_distance(...)`), so
`import invfeat` itself stays cheap and imports no JAX.
"""

import importlib
from types import ModuleType

__version__ = "0.1.0"

SUBMODULES = (
    "api",
    "attacks",
    "data",
    "features",
    "file_victim",
    "files",
    "losses",
    "metrics",
    "models",
    "report",
    "shufflebits",
    "stages",
    "study",
    "train",
    "victim",
)
__all__ = ["__version__", *SUBMODULES]


def __getattr__(name: str) -> ModuleType:
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
