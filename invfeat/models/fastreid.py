"""Load a FastReID ResNet checkpoint (.pth; BoT / AGW / SBS baselines) into `ReIDModel` variables.

Tensors are matched by the names of FastReID's `Baseline` state dict, any ResNet depth; what
invfeat's ResNet cannot hold (IBN-a, non-local, SE, ResNeXt, other backbones) is refused by name.
The .pth file is read without torch (`invfeat.models.pth`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import traverse_util

from invfeat.models.pth import ForbiddenGlobalError, PthError, load_pth
from invfeat.models.reid import ReIDModel

IGNORED_SUFFIXES = ("num_batches_tracked",)
PIXEL_KEYS = ("pixel_mean", "pixel_std")
_STATE_KEYS = ("model", "state_dict")  # where checkpoints keep the state dict
_PARALLEL_PREFIX = "module."
_OLD_NECK = re.compile(r"^heads\.bnneck\.")
_BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


class FastReIDCheckpointError(ValueError):
    """The checkpoint does not fit the linen model (missing, extra or mis-shaped tensors)."""


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensors of a FastReID .pth file as numpy arrays, floats as float32.

    Takes `{"model": state_dict, ...}` or a bare state dict. The file is read without torch by
    `invfeat.models.pth`, which unpickles tensors and plain containers only, so a whole pickled
    `nn.Module` is refused (save its `state_dict()`).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"FastReID checkpoint not found: {path}")
    try:
        checkpoint = load_pth(path)
    except ForbiddenGlobalError as err:
        raise FastReIDCheckpointError(
            f"{path}: holds pickled Python objects ({err.name}), not only tensors; "
            "invfeat reads tensors only: save the model's state_dict() (FastReID's "
            "checkpointer does) instead of the model"
        ) from None
    except PthError as err:
        reason = str(err).removeprefix(f"{path}: ")
        raise FastReIDCheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({reason})"
        ) from None
    state = None
    if isinstance(checkpoint, Mapping):
        state = next((checkpoint[k] for k in _STATE_KEYS if k in checkpoint), checkpoint)
    if not isinstance(state, Mapping):
        raise FastReIDCheckpointError(f"{path}: expected a state dict or {{'model': state_dict}}")
    return {
        k: v.astype(np.float32) if v.dtype.kind == "f" or v.dtype == ml_dtypes.bfloat16 else v
        for k, v in state.items()
        if isinstance(v, np.ndarray)
    }


def canonical_names(state: Mapping[str, Any]) -> dict[str, Any]:
    """The state dict under today's FastReID names: no DataParallel `module.` prefix, the older
    BNNeck name `heads.bnneck.*` as `heads.bottleneck.0.*`."""
    state = dict(state)
    while state and all(k.startswith(_PARALLEL_PREFIX) for k in state):
        state = {k[len(_PARALLEL_PREFIX) :]: v for k, v in state.items()}
    if not any(k.startswith("heads.bottleneck.") for k in state):
        state = {_OLD_NECK.sub("heads.bottleneck.0.", k): v for k, v in state.items()}
    return state


def check_supported(state: Mapping[str, np.ndarray], where: str = "checkpoint") -> None:
    """FastReIDCheckpointError naming the first part of `state` invfeat's ResNet cannot hold."""
    unsupported = [
        (lambda k: ".IN." in k, "IBN-a backbones (instance-norm halves, e.g. R50-ibn)"),
        (lambda k: k.startswith("backbone.NL_"), "non-local blocks (AGW's WITH_NL)"),
        (lambda k: ".se." in k, "squeeze-excitation blocks"),
        (lambda k: k.startswith("heads.bottleneck.1."), "an embedding conv before the BNNeck"),
        (
            lambda k: (
                re.fullmatch(r"backbone\.layer\d\.\d+\.conv2\.weight", k) is not None
                and np.ndim(state[k]) == 4
                and np.shape(state[k])[0] != np.shape(state[k])[1]
            ),
            "grouped convolutions (ResNeXt)",
        ),
    ]
    for test, what in unsupported:
        keys = [k for k in state if test(k)]
        if keys:
            raise FastReIDCheckpointError(
                f"{where}: {what} are out of scope for invfeat's ResNet (found {keys[0]}); "
                "only plain ResNet baselines (BoT, AGW/SBS without IBN/NL) load"
            )
    if "backbone.conv1.weight" not in state:
        backbone = sorted(k for k in state if k.startswith("backbone."))[:3]
        raise FastReIDCheckpointError(
            f"{where}: no backbone.conv1.weight (backbone keys: {', '.join(backbone) or 'none'}):"
            " not a FastReID ResNet; other backbones (ResNeSt, OSNet, RegNet, ViT, ...) are out "
            "of scope"
        )


def infer_model(
    state: Mapping[str, np.ndarray],
    pooling: str | None = None,
    last_stride: int = 1,
    dtype: Any = jnp.float32,
    stem_pool: str = "ceil",
) -> ReIDModel:
    """The `ReIDModel` a FastReID state dict describes.

    Depth, block type, width, class count and pixel statistics come from the tensors; pooling
    is "gem" when `heads.pool_layer.p` exists, else `pooling` (FastReID's avgpool and fixed-p
    gempool have no tensors: say which, default "avg"); last stride is not in the weights
    (every FastReID re-ID baseline uses 1), nor is the stem's max-pool: FastReID's is "ceil"
    (`MaxPool2d(3, 2, ceil_mode=True)`, from v1.0), "pad" serves checkpoints of earlier versions.
    """
    state = canonical_names(state)
    check_supported(state)
    blocks = [set() for _ in range(4)]
    for key in state:
        match = re.match(r"backbone\.layer([1-4])\.(\d+)\.", key)
        if match:
            blocks[int(match.group(1)) - 1].add(int(match.group(2)))
    stage_sizes = tuple(len(b) for b in blocks)
    if 0 in stage_sizes:
        raise FastReIDCheckpointError(f"backbone stages have {stage_sizes} blocks: need four")
    classifier = state.get("heads.weight", state.get("heads.classifier.weight"))
    has_p = "heads.pool_layer.p" in state
    kwargs = {}
    if all(k in state for k in PIXEL_KEYS):
        kwargs["pixel_mean"] = tuple(np.asarray(state["pixel_mean"], np.float64).ravel() / 255)
        kwargs["pixel_std"] = tuple(np.asarray(state["pixel_std"], np.float64).ravel() / 255)
    return ReIDModel(
        stage_sizes=stage_sizes,
        bottleneck="backbone.layer1.0.conv3.weight" in state,
        width=int(state["backbone.conv1.weight"].shape[0]),
        last_stride=last_stride,
        stem_pool=stem_pool,
        pooling="gem" if has_p else (pooling or "avg"),
        num_classes=0 if classifier is None else int(classifier.shape[0]),
        dtype=dtype,
        **kwargs,
    )


def _torch_key(path: tuple[str, ...], state: Mapping[str, Any]) -> tuple[str, str]:
    """(state-dict key, transform) for one flattened linen variable path."""
    collection, *names, leaf = path
    if names[0] == "backbone":
        parts = []
        for name in names[1:]:
            layer = re.fullmatch(r"layer(\d)_(\d+)", name)
            if layer:
                parts += [f"layer{layer.group(1)}", layer.group(2)]
            elif name.startswith("downsample_"):
                parts += ["downsample", "0" if name == "downsample_conv" else "1"]
            else:
                parts.append(name)
        prefix = "backbone." + ".".join(parts)
        if leaf == "kernel":
            return prefix + ".weight", "conv"
        return f"{prefix}.{_BN[leaf]}", "copy"
    if names == ["pool"]:
        return "heads.pool_layer.p", "copy"
    if names[0] == "bottleneck":
        return f"heads.bottleneck.0.{_BN[leaf]}", "copy"
    if names == ["classifier"]:
        key = "heads.weight" if "heads.weight" in state else "heads.classifier.weight"
        return key, "dense"
    raise FastReIDCheckpointError(f"no FastReID name for variable {'/'.join(path)}")


def state_dict_to_variables(state: Mapping[str, Any], model: ReIDModel) -> dict[str, Any]:
    """Map a FastReID state dict (name -> numpy array) onto `model`'s variables, checked.

    Convolutions go OIHW -> HWIO, the classifier [C, D] -> [D, C], BatchNorm weight / bias /
    running_mean / running_var -> scale / bias / mean / var; `pixel_mean` / `pixel_std` (0-255)
    are read by `infer_model`.
    """
    state = canonical_names(state)
    check_supported(state)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 32, 3)), train=False)
    )
    flat_shapes = traverse_util.flatten_dict(shapes)
    flat, used, missing, misshaped = {}, set(), [], []
    for path, shape in flat_shapes.items():
        key, transform = _torch_key(path, state)
        if key not in state:
            if key == "heads.pool_layer.p":  # FastReID's fixed-p gempool stores no p
                flat[path] = np.full(shape.shape, 3.0, np.float32)
                continue
            missing.append(key)
            continue
        value = np.asarray(state[key], np.float32)
        if transform == "conv":
            value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value
        elif transform == "dense":
            value = value.T
        if value.shape != tuple(shape.shape):
            misshaped.append(f"{key}: {np.shape(state[key])} does not fit {tuple(shape.shape)}")
        flat[path] = value
        used.add(key)
    extra = [
        k
        for k in state
        if k not in used and not k.endswith(IGNORED_SUFFIXES) and k not in PIXEL_KEYS
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:5])}")
    if extra:
        problems.append(f"unexpected {len(extra)} tensor(s): {', '.join(sorted(extra)[:5])}")
    if misshaped:
        problems.append("mis-shaped: " + "; ".join(misshaped[:5]))
    if problems:
        raise FastReIDCheckpointError(
            "FastReID checkpoint does not fit the model: " + " | ".join(problems)
        )
    return traverse_util.unflatten_dict({k: jnp.asarray(v) for k, v in flat.items()})


def load_fastreid(
    path: str | os.PathLike,
    pooling: str | None = None,
    last_stride: int = 1,
    dtype: Any = jnp.float32,
    stem_pool: str = "ceil",
) -> tuple[ReIDModel, dict[str, Any]]:
    """(model, variables) from a FastReID .pth checkpoint; see `infer_model` for the options."""
    state = read_state_dict(path)
    try:
        model = infer_model(
            state, pooling=pooling, last_stride=last_stride, dtype=dtype, stem_pool=stem_pool
        )
        return model, state_dict_to_variables(state, model)
    except FastReIDCheckpointError as err:
        raise FastReIDCheckpointError(f"{path}: {err}") from None
