"""Read Keras 2 HDF5 weight files (`model.save_weights` / `model.save`) into flax variables by name.

A Keras layer `L` fills the flax submodule named `L` (`WEIGHT_MAP`; Keras and flax share the HWIO
/ IO layouts). Layers the network does not use are ignored; a file of another network is refused
with `KerasWeightsError`, naming the layers it lacks and the layers it has.
"""

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

# Keras weight name (last path component) -> (flax collection, flax variable name)
WEIGHT_MAP: dict[str, tuple[str, str]] = {
    "kernel:0": ("params", "kernel"),
    "bias:0": ("params", "bias"),
    "gamma:0": ("params", "scale"),
    "beta:0": ("params", "bias"),
    "moving_mean:0": ("batch_stats", "mean"),
    "moving_variance:0": ("batch_stats", "var"),
}

LayerWeights = dict[str, dict[str, np.ndarray]]
_MAX_LISTED = 5


class KerasWeightsError(KeyError, ValueError):
    """A Keras weight file lacks a layer or weight the network needs (the message names them)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _listed(names: list[str]) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else ""
    return ", ".join(names[:_MAX_LISTED]) + more


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as error:
        raise ImportError("reading Keras .h5 weight files needs h5py: pip install h5py") from error
    return h5py


def _as_str(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read_keras_h5(path: str | os.PathLike) -> LayerWeights:
    """{layer name: {weight name (e.g. 'kernel:0'): array}} of every layer with weights in `path`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Keras weight file not found: {path}")
    h5py = _h5py()
    layers: LayerWeights = {}
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise OSError(f"{path}: not a readable HDF5 file ({error})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f  # a full `model.save` file
        if "layer_names" not in root.attrs:
            raise ValueError(
                f"{path} is not a Keras 2 HDF5 weight file (no 'layer_names' attribute); "
                "Keras 3 '.weights.h5' files are not supported"
            )
        for layer_name in map(_as_str, root.attrs["layer_names"]):
            group = root[layer_name]
            weights = {}
            for weight_name in map(_as_str, group.attrs.get("weight_names", [])):
                weights[weight_name.rsplit("/", 1)[-1]] = np.asarray(group[weight_name])
            if weights:
                layers[layer_name] = weights
    return layers


def keras_to_flax(layers: LayerWeights, template: Mapping[str, Any], source: str) -> dict:
    """Fill `template` ({"params": {layer: {...}}, "batch_stats": ...}, arrays or shape structs)
    with the same-named Keras layers; every template leaf must be found with the same shape."""
    needed = list(dict.fromkeys(name for modules in template.values() for name in modules))
    absent = [name for name in needed if name not in layers]
    if absent:
        raise KerasWeightsError(
            f"{source}: {len(absent)} of the {len(needed)} layers the network needs are not in "
            f"the Keras file ({_listed(absent)}); the file has the layers "
            f"{_listed(list(layers)) or '(none)'}: weights of another network?"
        )
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {c: {} for c in template}
    for collection, modules in template.items():
        for module_name, leaves in modules.items():
            found: dict[str, np.ndarray] = {}
            for keras_name, array in layers[module_name].items():
                if keras_name not in WEIGHT_MAP:
                    raise KerasWeightsError(
                        f"{source}: layer {module_name!r}: unknown weight {keras_name!r}"
                    )
                target_collection, target_name = WEIGHT_MAP[keras_name]
                if target_collection == collection:
                    found[target_name] = array
            for leaf_name, leaf in leaves.items():
                if leaf_name not in found:
                    raise KerasWeightsError(
                        f"{source}: layer {module_name!r} has no weight for {leaf_name!r}"
                    )
                if tuple(found[leaf_name].shape) != tuple(leaf.shape):
                    raise ValueError(
                        f"{source}: layer {module_name!r} {leaf_name}: shape "
                        f"{found[leaf_name].shape} in the file, {tuple(leaf.shape)} expected"
                    )
                out[collection].setdefault(module_name, {})[leaf_name] = found[leaf_name].astype(
                    np.float32
                )
    return out
