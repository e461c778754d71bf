"""Orders in which a loader visits the records of a split, epoch by epoch.

An order is a pure function of (seed, epoch), so every process computes the same global sequence
without communicating.
"""

from __future__ import annotations

import functools
from typing import Protocol

import numpy as np


class Order(Protocol):
    """Record indices visited in one epoch, identical on every process."""

    epoch_length: int

    def epoch(self, epoch: int) -> np.ndarray: ...


class SequentialOrder:
    """0..n-1 every epoch (evaluation)."""

    def __init__(self, num_records: int):
        if num_records <= 0:
            raise ValueError(f"cannot load an empty split (num_records={num_records})")
        self.epoch_length = num_records
        self._order = np.arange(num_records, dtype=np.int64)

    def epoch(self, epoch: int) -> np.ndarray:
        return self._order


class ShuffledOrder:
    """A fresh permutation every epoch."""

    def __init__(self, num_records: int, seed: int):
        if num_records <= 0:
            raise ValueError(f"cannot load an empty split (num_records={num_records})")
        self.epoch_length = num_records
        self._seed = seed

    @functools.lru_cache(maxsize=4)  # noqa: B019  (instances live as long as their loader)
    def epoch(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self._seed, epoch, 0x5EED])
        return rng.permutation(self.epoch_length)


class PKOrder:
    """Identity-balanced batches for triplet training: P identities x K images per P*K positions.

    An identity's K images are drawn without replacement when it has at least K, else with
    replacement. An epoch holds each identity once, except n mod P of them left out at random.
    """

    def __init__(self, identities: np.ndarray, p: int, k: int, seed: int):
        identities = np.asarray(identities).reshape(-1)
        if p <= 0 or k <= 0:
            raise ValueError(f"P and K must be positive, got P={p}, K={k}")
        unique, inverse = np.unique(identities, return_inverse=True)
        if len(unique) < p:
            raise ValueError(f"P={p} identities per batch but the split has only {len(unique)}")
        self._members = [np.flatnonzero(inverse == i) for i in range(len(unique))]
        self._p, self._k, self._seed = p, k, seed
        self.epoch_length = (len(unique) // p) * p * k

    @functools.lru_cache(maxsize=4)  # noqa: B019
    def epoch(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self._seed, epoch, 0x9B])
        chosen = rng.permutation(len(self._members))[: self.epoch_length // self._k]
        out = np.empty([len(chosen), self._k], np.int64)
        for row, identity in enumerate(chosen):
            members = self._members[identity]
            out[row] = rng.choice(members, self._k, replace=len(members) < self._k)
        return out.reshape(-1)


def record_at(order: Order, position: int) -> int:
    """Record index at a global position (epoch = position // epoch_length)."""
    epoch, offset = divmod(position, order.epoch_length)
    return int(order.epoch(epoch)[offset])
