"""The black-box API: images in, feature vectors (plaintext or ShuffleBits ciphertext) out.

`FeatureAPI` wraps a pure `features_fn(variables, images_BHWC) -> [B, D]` (e.g.
`invfeat.models.reid.make_features_fn(model)`) into one compiled program that runs on fixed-size
batches sharded over a one-axis ("data",) mesh of this process's devices: the last batch is
padded, so a call of any length never recompiles. With a `shufflebits.Key` the program emits
ciphertext under that static key; with a `shufflebits.Secret` (one-time mode) it draws a fresh
nonce per vector on the host (os.urandom) and encrypts each vector under its own permutation;
encryption runs inside the same jit as the network, so plaintext features never leave the device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from invfeat import shufflebits
from invfeat.models.reid import ReIDModel, make_features_fn

FeaturesFn = Callable[[Any, jax.Array], jax.Array]


class Served(NamedTuple):
    """What the API returns: features [N, D] float32 and, in one-time mode, nonces [N, 3] uint32."""

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

    `api(images)` returns the served array (ciphertext when a key is set); `api.serve(images)`
    returns `Served(features, nonces)`, which one-time mode needs for decryption
    (`shufflebits.decrypt(served.features, secret, served.nonces)`).
    """

    def __init__(
        self,
        features_fn: FeaturesFn,
        variables: Any,
        batch_size: int = 256,
        key: shufflebits.Key | shufflebits.Secret | None = None,
        devices: list[jax.Device] | None = None,
    ):
        if key is not None and not isinstance(key, shufflebits.Key | shufflebits.Secret):
            raise TypeError(f"key must be a shufflebits Key or Secret, got {type(key).__name__}")
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
        # A batch splits evenly over the mesh: round up to a multiple of the device count.
        self.batch_size = -(-int(batch_size) // len(devices)) * len(devices)
        self.key = key
        self._batch = NamedSharding(self.mesh, P("data"))
        replicated = NamedSharding(self.mesh, P())
        self.variables = jax.device_put(variables, replicated)

        def serve_batch(variables: Any, images_BHWC: jax.Array, nonces_B3: Any) -> jax.Array:
            features = features_fn(variables, images_BHWC).astype(jnp.float32)
            if key is None:
                return features
            return shufflebits.encrypt(features, key, nonces_B3)

        in_shardings = (replicated, self._batch, self._batch if self.one_time else None)
        self._compiled = jax.jit(serve_batch, in_shardings=in_shardings, out_shardings=self._batch)

    @classmethod
    def from_model(cls, model: ReIDModel, variables: Any, **kwargs: Any) -> FeatureAPI:
        return cls(make_features_fn(model), variables, **kwargs)

    @property
    def one_time(self) -> bool:
        return isinstance(self.key, shufflebits.Secret)

    def _batches(self, images: np.ndarray) -> Iterator[tuple[int, jax.Array, Any]]:
        """(valid rows, padded device batch, nonces or None) for consecutive batches."""
        size = self.batch_size
        for start in range(0, len(images), size):
            chunk = as_float_images(images[start : start + size])  # uint8 stays uint8 until here
            valid = len(chunk)
            if valid < size:
                chunk = np.concatenate(
                    [chunk, np.zeros((size - valid, *chunk.shape[1:]), chunk.dtype)]
                )
            nonces = None
            if self.one_time:
                nonces = jax.device_put(shufflebits.fresh_nonces(size), self._batch)
            yield valid, jax.device_put(chunk, self._batch), nonces

    def serve(self, images: Any) -> Served:
        """Features of `images` (uint8 or float [0, 1], [N, H, W, 3]) and the nonces used."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [N, H, W, 3] RGB, got shape {images.shape}")
        pending, outputs, nonce_list = [], [], []
        for valid, batch, nonces in self._batches(images):
            pending.append((valid, self._compiled(self.variables, batch, nonces), nonces))
            if len(pending) > 1:  # keep one batch in flight while fetching the previous one
                self._collect(pending.pop(0), outputs, nonce_list)
        for item in pending:
            self._collect(item, outputs, nonce_list)
        if not outputs:
            raise ValueError("images is empty: nothing to serve")
        nonces_out = np.concatenate(nonce_list) if self.one_time else None
        return Served(np.concatenate(outputs), nonces_out)

    @staticmethod
    def _collect(item: tuple, outputs: list, nonce_list: list) -> None:
        valid, features, nonces = item
        outputs.append(np.asarray(features)[:valid])
        if nonces is not None:
            nonce_list.append(np.asarray(nonces)[:valid])

    def __call__(self, images: Any) -> np.ndarray:
        """The served feature array (ciphertext under a key; one-time nonces are dropped)."""
        return self.serve(images).features
