"""A pure `fn(variables, inputs)` over any number of rows: fixed-size blocks, one compilation."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, Sharding

from invfeat.train.mesh import batch_sharding

Inputs = np.ndarray | tuple[np.ndarray, ...]


def _rows(inputs: Inputs) -> int:
    lengths = {len(x) for x in jax.tree.leaves(inputs)}
    if len(lengths) != 1:
        raise ValueError(f"the inputs differ in rows: {sorted(lengths)}")
    return lengths.pop()


def _pad(block: np.ndarray, size: int) -> np.ndarray:
    if len(block) == size:
        return block
    return np.concatenate([block, np.zeros((size - len(block), *block.shape[1:]), block.dtype)])


class BlockPredictor:
    """`fn(variables, inputs [B, ...]) -> outputs [B, ...]` over any number of rows.

    `fn` is jitted once with its inputs and outputs split along the mesh's "data" axis and
    applied block by block; the last block is padded with zero rows, dropped from the output,
    so a call of any length never recompiles. One block stays in flight while the previous one
    is fetched. `block_size` is rounded up to a multiple of the mesh's device count.
    `variables_sharding` places the variables (None: where they already are).
    """

    def __init__(
        self,
        fn: Callable[[Any, Any], jax.Array],
        mesh: Mesh,
        block_size: int = 256,
        *,
        variables_sharding: Sharding | None = None,
    ):
        n = mesh.devices.size
        self.block_size = -(-max(block_size, 1) // n) * n
        self._sharding = batch_sharding(mesh)
        self._fn = jax.jit(
            fn,
            in_shardings=(variables_sharding, self._sharding),
            out_shardings=self._sharding,
        )

    def _blocks(
        self, inputs: Inputs, prepare: Callable[[Any], Any] | None
    ) -> Iterator[tuple[int, Any]]:
        """(valid rows, padded block on the devices) for consecutive blocks of `inputs`."""
        size = self.block_size
        for start in range(0, _rows(inputs), size):
            block = jax.tree.map(operator.itemgetter(slice(start, start + size)), inputs)
            if prepare is not None:
                block = prepare(block)
            valid = _rows(block)
            padded = jax.tree.map(lambda x: _pad(np.asarray(x), size), block)
            yield valid, jax.device_put(padded, self._sharding)

    def _fetch(self, valid: int, out: jax.Array) -> np.ndarray:
        if not out.is_fully_addressable:
            out = multihost_utils.process_allgather(out, tiled=True)
        return np.asarray(out)[:valid]

    def __call__(
        self, variables: Any, inputs: Inputs, prepare: Callable[[Any], Any] | None = None
    ) -> np.ndarray:
        """`fn` over every row of `inputs` (a host array, or a tuple of them), in row order.

        `prepare` turns each block into what is sent (e.g. uint8 images into checked floats), so
        a large input is converted a block at a time.
        """
        inputs = jax.tree.map(np.asarray, inputs)
        if _rows(inputs) == 0:
            raise ValueError("nothing to predict: inputs has no rows")
        outputs, in_flight = [], None
        for valid, block in self._blocks(inputs, prepare):
            dispatched = (valid, self._fn(variables, block))
            if in_flight is not None:  # fetch the previous block while this one runs
                outputs.append(self._fetch(*in_flight))
            in_flight = dispatched
        outputs.append(self._fetch(*in_flight))
        return np.concatenate(outputs)
