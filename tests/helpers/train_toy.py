"""A tiny model, loss and resumable data iterator for the engine tests and the multi-host worker.

Imported as `from helpers import train_toy as toy`."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

FEATURES = 4
CLASSES = 3


class ToyNet(nn.Module):
    """Dense -> BatchNorm -> ReLU -> Dropout -> Dense: exercises params, batch_stats and rng."""

    hidden: int = 16
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype)(x)  # BN follows
        x = nn.BatchNorm(use_running_average=not train, dtype=self.dtype)(x)
        x = nn.Dropout(0.25, deterministic=not train)(nn.relu(x))
        return nn.Dense(CLASSES, dtype=self.dtype)(x)


def init_fn(rng: jax.Array, model: ToyNet | None = None) -> Any:
    return (model or ToyNet()).init(rng, jnp.zeros((1, FEATURES)), train=False)


def make_loss_fn(model: ToyNet | None = None):
    model = model or ToyNet()

    def loss_fn(params, model_state, batch, rng):
        logits, updates = model.apply(
            {"params": params, **model_state},
            batch["x"],
            train=True,
            rngs={"dropout": rng},
            mutable=["batch_stats"],
        )
        logits = logits.astype(jnp.float32)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        accuracy = (logits.argmax(-1) == batch["y"]).mean()
        return loss, ({"accuracy": accuracy}, updates)

    return loss_fn


def global_batch(position: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The global batch number `position`: a deterministic function of (seed, position)."""
    rng = np.random.default_rng([seed, position])
    y = rng.integers(0, CLASSES, size=size).astype(np.int32)
    x = rng.normal(size=(size, FEATURES)).astype(np.float32) + y[:, None].astype(np.float32)
    return {"x": x, "y": y, "file_name": np.array([f"{position}_{i}.png" for i in range(size)])}


class ToyData:
    """Endless iterator over this process's slice of the global batches, with get/set_state."""

    def __init__(
        self,
        global_size: int,
        process_index: int = 0,
        process_count: int = 1,
        seed: int = 0,
        nan_at: int | None = None,
    ):
        self.global_size, self.seed, self.nan_at = global_size, seed, nan_at
        local = global_size // process_count
        self.rows = slice(process_index * local, (process_index + 1) * local)
        self.position = 0

    def __iter__(self) -> ToyData:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = global_batch(self.position, self.global_size, self.seed)
        if self.position == self.nan_at:
            batch["x"][:] = np.nan
        self.position += 1
        return {k: v[self.rows] for k, v in batch.items()}

    def get_state(self) -> dict[str, int]:
        return {"position": self.position}

    def set_state(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])
