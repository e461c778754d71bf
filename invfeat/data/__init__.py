"""Data: attribute tables, dataset layouts and builders, the synthetic world, grain pipelines,
feature files; each submodule loads on first use."""

from invfeat import lazy_submodules

SUBMODULES = (
    "attributes",
    "builders",
    "datasets",
    "feature_files",
    "layouts",
    "pipeline",
    "sampling",
    "synth",
)
__all__ = list(SUBMODULES)
__getattr__, __dir__ = lazy_submodules(__name__, SUBMODULES)
