"""Cost of fused ShuffleBits in a ResNet-50 re-ID forward pass (FastReID BoT-like, 2048-d).

    python benchmarks/shufflebits_resnet.py                      # batch 256, 256x128 (GPU)
    python benchmarks/shufflebits_resnet.py --batch 2 --height 64 --width 32   # tiny, CPU

Times jit(features_fn), jit(with_encryption(features_fn, key)) and the one-time variant on the
same device-resident batch (warm-up excluded, best of --repeats) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from invfeat import shufflebits as sb
from invfeat.models.reid import get_config, init_variables, make_features_fn


def best_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    args = parser.parse_args()

    model = get_config("resnet50").build(dtype=jnp.dtype(args.dtype))
    variables = init_variables(model, jax.random.key(0, impl="rbg"), (args.height, args.width))
    images = jax.device_put(
        np.random.default_rng(0).random((args.batch, args.height, args.width, 3), np.float32)
    )
    features_fn = make_features_fn(model)
    key, secret = sb.Key.generate(), sb.Secret.generate()
    nonces = jax.device_put(sb.fresh_nonces(args.batch))
    plain = jax.jit(features_fn)
    static = jax.jit(sb.with_encryption(features_fn, key))
    one_time = jax.jit(sb.with_encryption(features_fn, secret))
    t_plain = best_time(lambda: plain(variables, images), args.repeats)
    t_static = best_time(lambda: static(variables, images), args.repeats)
    t_one = best_time(lambda: one_time(variables, images, nonce=nonces), args.repeats)
    out = plain(variables, images)
    assert np.array_equal(
        np.asarray(sb.decrypt(static(variables, images), key)).view(np.uint32),
        np.asarray(out).view(np.uint32),
    )
    dev = jax.devices()[0]
    print(
        f"\nResNet-50 re-ID forward, batch {args.batch}, {args.height}x{args.width}, "
        f"{args.dtype} backbone, {out.shape[-1]}-d float32 features, on {dev.device_kind}\n"
    )
    print("| forward pass | ms / batch | overhead vs plain |")
    print("|---|---:|---:|")
    for name, t in (
        ("plain", t_plain),
        ("+ static-key ShuffleBits (fused)", t_static),
        ("+ one-time ShuffleBits (fused)", t_one),
    ):
        print(f"| {name} | {t * 1e3:.2f} | {100 * (t / t_plain - 1):+.2f} % |")


if __name__ == "__main__":
    main()
