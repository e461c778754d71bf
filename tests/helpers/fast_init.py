"""Host-filled flax variables for tests: the shapes of a real init without compiling one.

Compiling an init program (threefry random numbers for every parameter) costs seconds on CPU; the
attack tests need variables of the right structure with sensible scales, not flax's exact draws.
"""

import jax
import numpy as np

KEY = jax.random.key(0)


def fast_init(init, *args):
    """Variables shaped as `init(rng, *args)` returns them, filled on the host (no init program to
    compile): kernels ~ N(0, 1/fan_in), biases and BN means 0, scales, variances and sigmas 1."""
    abstract = jax.eval_shape(init, KEY, *args)
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path[-1:])
        if "kernel']" in name:
            return (rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(
                np.float32
            )
        if "/u'" in name:
            return rng.normal(size=leaf.shape).astype(np.float32)
        one = any(f"{k}']" in name for k in ("scale", "var", "sigma"))
        return np.full(leaf.shape, 1.0 if one else 0.0, np.float32)

    return jax.tree_util.tree_map_with_path(fill, abstract)
