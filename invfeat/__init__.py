"""invfeat: model-inversion attacks on deep features, and ShuffleBits encryption, in JAX/Flax.

Submodules load on first use (`import invfeat; invfeat.losses.cosine_distance(...)`), so
`import invfeat` itself stays cheap and imports no JAX. Its subpackages do the same.
"""

import importlib
from collections.abc import Callable
from types import ModuleType

__version__ = "0.1.0"


def lazy_submodules(
    package: str, names: tuple[str, ...]
) -> tuple[Callable[[str], ModuleType], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package`: each of its submodules `names` loads on first use."""

    def __getattr__(name: str) -> ModuleType:
        if name in names:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__


def lazy_exports(
    package: str, submodules: tuple[str, ...], exports: dict[str, tuple[str, ...]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package`: its `submodules`, and the names each submodule of
    `exports` offers at the package level, all imported on first use."""
    owner = {name: module for module, names in exports.items() for name in names}
    load_submodule, _ = lazy_submodules(package, submodules)

    def __getattr__(name: str) -> object:
        if name in owner:
            return getattr(importlib.import_module(f"{package}.{owner[name]}"), name)
        return load_submodule(name)

    def __dir__() -> list[str]:
        return sorted({*submodules, *owner})

    return __getattr__, __dir__


SUBMODULES = (
    "api",
    "attacks",
    "data",
    "defences",
    "files",
    "losses",
    "metrics",
    "models",
    "selftest",
    "shufflebits",
    "study",
    "train",
    "victims",
)
__all__ = ["__version__", "lazy_submodules", *SUBMODULES]
__getattr__, __dir__ = lazy_submodules(__name__, SUBMODULES)
