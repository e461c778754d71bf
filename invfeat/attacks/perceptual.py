"""The perceptual network of a reconstruction attack: which one a config names, whether the
threat model allows it, and how it enters the attack's train state.

The networks themselves are `invfeat.models.perceptual`; what an attacker may use is decided
here. The threat model gives the attacker the black-box API and public data, so a surrogate
trained on the API's answers and ImageNet weights are allowed; gradients through the victim
itself (`white-box`) are an upper bound outside it, and every result that used them says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from invfeat.attacks.configs import ReconstructionConfig
from invfeat.models.perceptual import (
    KERAS_LOADERS,
    KERAS_WEIGHTS_FILES,
    PerceptualNetwork,
    make_perceptual,
)
from invfeat.train.state import TrainState, split_variables

if TYPE_CHECKING:  # reconstruction imports this module
    from invfeat.attacks.reconstruction import SurrogateResult

THREAT_MODEL_ALLOWED = {
    "victim-surrogate": True,
    "resnet50-imagenet": True,
    "vgg16-imagenet": True,
    "white-box": False,
}


def threat_model_allowed(network: PerceptualNetwork) -> bool:
    """Whether the threat model lets the attacker use `network` (by its name)."""
    return THREAT_MODEL_ALLOWED[network.name]


def describe_perceptual(network: PerceptualNetwork) -> dict[str, Any]:
    """The JSON label of a perceptual network for reports."""
    return {
        "name": network.name,
        "threat_model_allowed": threat_model_allowed(network),
        "description": network.description,
    }


def resolve_perceptual(
    config: ReconstructionConfig,
    perceptual_fn: PerceptualNetwork | SurrogateResult | None,
    train_surrogate_fn: Callable[[], SurrogateResult],
) -> tuple[PerceptualNetwork, SurrogateResult | None]:
    """The perceptual network `config.perceptual` names (given, trained, or loaded).

    `perceptual_fn` is a network, or the `SurrogateResult` of a trained surrogate; a surrogate
    is trained by `train_surrogate_fn` only when the config names it and none is given.
    """
    if perceptual_fn is not None and not isinstance(perceptual_fn, PerceptualNetwork):
        perceptual_fn = perceptual_fn.perceptual
    if perceptual_fn is not None:
        if perceptual_fn.name != config.perceptual:
            raise ValueError(
                f"config.perceptual is {config.perceptual!r} but perceptual_fn is a "
                f"{perceptual_fn.name!r} network"
            )
        return perceptual_fn, None
    if config.perceptual == "victim-surrogate":
        surrogate = train_surrogate_fn()
        return surrogate.perceptual, surrogate
    if config.perceptual in KERAS_LOADERS:
        if config.perceptual_weights is None:
            raise ValueError(
                f"perceptual {config.perceptual!r} needs config.perceptual_weights: the path of "
                f"Keras' {KERAS_WEIGHTS_FILES[config.perceptual]} (nothing is downloaded); or use "
                "perceptual='victim-surrogate'"
            )
        network = make_perceptual(
            config.perceptual,
            weights_path=config.perceptual_weights,
            output_layer=config.perceptual_layer,
        )
        return network, None
    raise ValueError(
        "perceptual 'white-box' needs perceptual_fn=invfeat.models.perceptual."
        "white_box_perceptual(victim features_fn, victim variables)"
    )


def perceptual_key(perceptual: PerceptualNetwork | None) -> tuple | None:
    """Hashable identity of a perceptual network: its function and its variables' shapes."""
    if perceptual is None:
        return None
    leaves, tree = jax.tree.flatten(perceptual.variables)
    shapes = tuple(
        (tuple(np.shape(x)), str(np.asarray(x).dtype if np.isscalar(x) else x.dtype))
        for x in leaves
    )
    return (perceptual.features, tree, shapes)


def with_perceptual(state: TrainState, variables: Any) -> TrainState:
    """Put the perceptual network's variables (frozen) into a state made with placeholders.

    The state's buffers are donated to each step, so the caller's arrays are copied, never
    aliased: the same perceptual network serves several attacks.
    """
    params, rest = split_variables(variables)
    place = lambda new, old: jax.device_put(np.array(new, old.dtype), old.sharding)
    params = jax.tree.map(place, params, state.params["perceptual"])
    rest = jax.tree.map(place, rest, state.model_state["perceptual"])
    return state.replace(
        params={**state.params, "perceptual": params},
        model_state={**state.model_state, "perceptual": rest},
    )
