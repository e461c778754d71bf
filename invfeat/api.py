"""The black-box API: images in, feature vectors (plaintext, or ciphertext of any mode) out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from invfeat import shufflebits
from invfeat.defences import Defence, ProjectionKey, build, fresh_noise_keys
from invfeat.models.reid import ReIDModel, make_features_fn
from invfeat.train.predict import BlockPredictor

FeaturesFn = Callable[[Any, jax.Array], jax.Array]


class Served(NamedTuple):
    """What the API returns: features [N, D] float32 and, under a key that takes nonces (one-time
    and stream mode), the nonces [N, 3] uint32 they were encrypted under."""

    features: np.ndarray
    nonces: np.ndarray | None


def as_float_images(images: Any, name: str = "images") -> np.ndarray:
    """uint8 [0, 255] or float [0, 1] images [N, H, W, 3] -> float32 [0, 1] (checked)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{name} must be [N, H, W, 3] RGB, got shape {images.shape}")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 255.0
    # jnp.issubdtype: numpy's own does not count bfloat16 (ml_dtypes) as floating.
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise TypeError(f"{name} must be uint8 or float in [0, 1], got dtype {images.dtype}")
    images = images.astype(np.float32, copy=False)
    if images.size:
        low, high = images.min(), images.max()
        if np.isnan(low) or np.isnan(high):  # min/max are NaN if any element is
            raise ValueError(f"{name} hold NaN values")
        if low < 0.0 or high > 1.0:
            raise ValueError(
                f"{name} are floats outside [0, 1] (range {low:.3g}..{high:.3g}); "
                "pass uint8 or divide by 255"
            )
    return images


class FeatureAPI:
    """A compiled, batched, sharded images -> features service over fixed variables.

    `features_fn(variables, images_BHWC) -> [B, D]` (e.g. `make_features_fn(model)`) runs as one
    program on fixed-size batches over this process's devices (`BlockPredictor`), so a call of
    any length never recompiles. With a `shufflebits.Key` it emits ciphertext under that static
    key. With a key whose scheme takes nonces (`shufflebits.uses_nonces`: a `Secret`, one-time
    mode, or a `StreamKey`, stream mode) each vector is encrypted under a fresh nonce drawn on
    the host. With a `defence` (`invfeat.defences.Defence`; project needs its secret
    `projection_key`) the features are transformed before anything else happens to them; noise
    draws each vector's own PRNG key on the host (`fresh_noise_keys`). The defence and the
    encryption run inside the same jit as the network, so plaintext features never leave the
    device.

    `api(images)` returns the served array (ciphertext when a key is set); `api.serve(images)`
    returns `Served(features, nonces)`, whose nonces decryption needs in one-time and stream
    mode (`shufflebits.decrypt(served.features, key, served.nonces)`).
    """

    def __init__(
        self,
        features_fn: FeaturesFn,
        variables: Any,
        batch_size: int = 256,
        key: shufflebits.Key | shufflebits.Secret | shufflebits.StreamKey | None = None,
        devices: list[jax.Device] | None = None,
        *,
        defence: Defence | None = None,
        projection_key: ProjectionKey | None = None,
    ):
        if key is not None:
            shufflebits.uses_nonces(key)  # TypeError for a non-key
        if defence is not None and not isinstance(defence, Defence):
            raise TypeError(f"defence must be an invfeat.defences.Defence, got {defence!r}")
        if projection_key is not None and not isinstance(projection_key, ProjectionKey):
            raise TypeError(f"projection_key must be a ProjectionKey, got {type(projection_key)}")
        if projection_key is not None and (defence is None or not defence.needs_key):
            raise ValueError("projection_key is for a project defence alone")
        if defence is not None and defence.needs_key and projection_key is None:
            raise ValueError(f"{defence.label} needs a projection_key (ProjectionKey.generate())")
        if isinstance(key, shufflebits.Key) and key.bits != 32:
            raise ValueError(
                f"the API serves float32 features: a static key must be 32-bit, got {key.bits}-bit"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        devices = list(jax.local_devices() if devices is None else devices)
        if not devices:
            raise ValueError("devices is empty: the API needs at least one device")
        self.mesh = Mesh(np.array(devices), ("data",))
        self.key = key
        self.defence = defence
        self._noisy = defence is not None and defence.needs_rng
        replicated = NamedSharding(self.mesh, P())
        self.variables = jax.device_put(variables, replicated)

        def serve_batch(variables: Any, inputs: dict[str, jax.Array]) -> jax.Array:
            """Features of a batch of images, defended, then encrypted under the key."""
            features = features_fn(variables, inputs["images"]).astype(jnp.float32)
            if defence is not None:
                with jax.ensure_compile_time_eval():  # project's matrix: a constant, made once
                    transform = build(defence, features.shape[-1], key=projection_key)
                rng = None
                if "noise" in inputs:
                    rng = jax.random.wrap_key_data(inputs["noise"], impl="threefry2x32")
                features = transform(features, rng)
            if key is None:
                return features
            return shufflebits.encrypt(features, key, inputs.get("nonces"))

        # A batch splits evenly over the mesh: its size is rounded up to the device count.
        self._predict = BlockPredictor(
            serve_batch, self.mesh, int(batch_size), variables_sharding=replicated
        )
        self.batch_size = self._predict.block_size

    @classmethod
    def from_model(cls, model: ReIDModel, variables: Any, **kwargs: Any) -> FeatureAPI:
        return cls(make_features_fn(model), variables, **kwargs)

    @property
    def uses_nonces(self) -> bool:
        """Whether each served vector comes with its nonce (one-time and stream mode)."""
        return self.key is not None and shufflebits.uses_nonces(self.key)

    def serve(self, images: Any) -> Served:
        """Features of `images` (uint8 or float [0, 1], [N, H, W, 3]) and the nonces used."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [N, H, W, 3] RGB, got shape {images.shape}")
        if not len(images):
            raise ValueError("images is empty: nothing to serve")
        # uint8 images stay uint8 until their batch is sent
        inputs = {"images": images}
        if self.uses_nonces:
            inputs["nonces"] = shufflebits.fresh_nonces(len(images))
        if self._noisy:
            inputs["noise"] = np.asarray(jax.random.key_data(fresh_noise_keys(len(images))))
        features = self._predict(
            self.variables,
            inputs,
            lambda block: block | {"images": as_float_images(block["images"])},
        )
        return Served(features, inputs.get("nonces"))

    def __call__(self, images: Any) -> np.ndarray:
        """The served feature array (ciphertext under a key; nonces, if any, are dropped)."""
        return self.serve(images).features
