"""Host arrays in and out of the attacks' compiled programs: resumable batches, the attacker's
features as the device gets them, the networks' init key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from invfeat.attacks.ciphertext import encode_features
from invfeat.data.sampling import ShuffledOrder
from invfeat.train.mesh import check_batch_size

MASK = "mask"  # the batch key of `partial_batches`: True for a real row, False for padding


class ArrayBatches:
    """Endless shuffled batches (dicts of numpy arrays) of equally long host arrays.

    The global order is a pure function of (seed, epoch) (`ShuffledOrder`); each process takes
    its contiguous part of every global batch. By default batches run on across epochs (every
    batch full, `batches_per_epoch` = floor(rows / batch_size) on average); with
    `partial_batches` each epoch is Keras' `fit`: its own shuffle in ceil(rows / batch_size)
    batches, the last one padded to `batch_size` and every batch carrying a boolean MASK
    (False on padding rows). `get_state()` / `set_state()` are checkpointed, so a resumed
    attack sees the same batches.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        batch_size: int,
        *,
        mesh: Mesh,
        seed: int = 0,
        name: str = "batch_size",
        partial_batches: bool = False,
    ):
        lengths = {k: len(v) for k, v in arrays.items()}
        if not lengths or len(set(lengths.values())) != 1 or 0 in lengths.values():
            raise ValueError(f"ArrayBatches needs non-empty, equally long arrays; got {lengths}")
        check_batch_size(batch_size, mesh, name)
        processes = jax.process_count()
        self._arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self._num = next(iter(lengths.values()))
        self._order = ShuffledOrder(self._num, seed)
        self._global = batch_size
        self._local = batch_size // processes
        self._offset = jax.process_index() * self._local
        self._partial = partial_batches
        self._batches = 0  # global batches handed out

    def __iter__(self) -> ArrayBatches:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._partial:
            return self._next_partial()
        start = self._batches * self._global + self._offset
        positions = np.arange(start, start + self._local)
        epochs, offsets = np.divmod(positions, self._num)
        indices = np.empty_like(positions)
        for epoch in np.unique(epochs):
            rows = epochs == epoch
            indices[rows] = self._order.epoch(int(epoch))[offsets[rows]]
        self._batches += 1
        return {k: v[indices] for k, v in self._arrays.items()}

    def _next_partial(self) -> dict[str, np.ndarray]:
        per_epoch = -(-self._num // self._global)
        epoch, batch = divmod(self._batches, per_epoch)
        start = batch * self._global + self._offset
        offsets = np.arange(start, start + self._local)
        real = offsets < self._num
        indices = self._order.epoch(epoch)[np.minimum(offsets, self._num - 1)]
        self._batches += 1
        return {k: v[indices] for k, v in self._arrays.items()} | {MASK: real}

    def get_state(self) -> dict[str, int]:
        return {
            "batches": self._batches,
            "num_records": self._num,
            "batch_size": self._global,
            "partial_batches": self._partial,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        expected = {"num_records": self._num, "batch_size": self._global}
        if self._partial:  # checkpoints of the other mode have no such key
            expected["partial_batches"] = True
        found = {k: state.get(k) for k in expected}
        if found != expected:
            raise ValueError(
                f"the checkpoint's data state {found} does not match this run's {expected}: "
                "resume with the same arrays and batch size (or start afresh with resume=False)"
            )
        self._batches = int(state["batches"])


def attacker_features(features_ND: np.ndarray, encoding: str | None, name: str) -> np.ndarray:
    """The host array the attack programs read: uint32 words with an encoding, else float32.

    Words are encoded inside the jitted program, so ciphertext bits stay exact and no float op
    sees a NaN payload; without an encoding the features must be finite.
    """
    features_ND = np.asarray(features_ND)
    if features_ND.ndim != 2:
        raise ValueError(f"{name} must be [N, D], got shape {features_ND.shape}")
    if encoding is not None:
        if features_ND.dtype != np.float32:
            raise TypeError(
                f"{name}: an encoding reads the bits of float32 features, got {features_ND.dtype}"
            )
        return np.ascontiguousarray(features_ND).view(np.uint32)
    if not jnp.issubdtype(features_ND.dtype, jnp.floating):  # numpy's misses bfloat16
        raise TypeError(f"{name} must be float features, got {features_ND.dtype}")
    features_ND = features_ND.astype(np.float32)
    if not np.isfinite(features_ND).all():
        raise ValueError(
            f"{name} holds NaN or inf (ciphertext?): set the attack config's encoding "
            "(e.g. 'bits') to read the features' bits"
        )
    return features_ND


def feature_transform(encoding: str | None) -> Callable[[jax.Array], jax.Array]:
    """Inside jit: the attacker's device features -> the networks' input."""
    if encoding is None:
        return lambda features: features
    return lambda words: encode_features(words, encoding)


def init_key(rng: jax.Array) -> jax.Array:
    """An "rbg" key (XLA's RngBitGenerator) from the engine's raw threefry key, inside init.

    Flax initialisers drawn from threefry keys make init programs that compile slower than the
    networks' training steps on CPU; rbg draws compile quickly. The draws are deterministic per
    seed and backend; a resumed run restores its state and never re-initialises, so nothing
    else depends on them.
    """
    data = jnp.asarray(rng, jnp.uint32).reshape(-1)
    return jax.random.wrap_key_data(
        jnp.concatenate([data, data ^ jnp.uint32(0x9E3779B9)]), impl="rbg"
    )
