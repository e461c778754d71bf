"""The networks as pure flax.linen modules; each submodule loads on first use
(`invfeat.models.reid.get_config(...)` after `import invfeat`)."""

from invfeat import lazy_submodules

SUBMODULES = (
    "attribute_head",
    "decoder",
    "discriminator",
    "fastreid",
    "initializers",
    "keras_h5",
    "perceptual",
    "reid",
    "resnet",
)
__all__ = list(SUBMODULES)
__getattr__, __dir__ = lazy_submodules(__name__, SUBMODULES)
