"""Victim re-ID model throughput: training and inference images/s, achieved TFLOP/s.

Prints a table; never asserted. The same script runs on CPU and GPU:

    python benchmarks/victim.py                       # CPU: cpu-tiny and cpu-small
    python benchmarks/victim.py --configs resnet50 --dtypes float32,bfloat16 \
        --train-batch 64 --infer-batch 256             # GPU: ResNet-50 at 256x128 (its default)
    python benchmarks/victim.py --configs cpu-tiny --train-batch 4 --infer-batch 4 \
        --repeats 1 --warmup 1 --matmul-size 64        # smoke test (--input HxW: other sizes)

FLOPs per step come from XLA's cost analysis of the same step lowered for the CPU backend
(`jax.jit(step).lower(...)` on abstract CPU arguments; nothing is compiled): on GPU, programs
hand convolutions to cuDNN custom calls, which the GPU cost analysis counts as 0 FLOPs (the
compiled one reported 0.6 TFLOP/s for a ResNet-50 step that really runs at tens). The peak is a measured square matmul of the same dtype (fp32 matmuls and convs
run at XLA's default precision, which is TF32 on recent NVIDIA GPUs). Each config is
initialised once (float32 parameters, whatever the compute dtype) and copied for each dtype.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import device_info  # benchmarks/device_info.py, beside this script
import jax
import jax.numpy as jnp
import numpy as np
import optax

from invfeat import losses
from invfeat.models.reid import get_config, init_variables

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def flops_of(fn: Any, *args: Any) -> float:
    """FLOPs of `jax.jit(fn)(*args)` by XLA's cost analysis of the program lowered for CPU.

    Lowering for CPU from abstract arguments compiles nothing; GPU programs hide convolutions
    in cuDNN custom calls, which the GPU cost analyses count as 0 FLOPs. NaN where JAX has no
    CPU backend (JAX_PLATFORMS names only the GPU).
    """
    try:
        cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    except RuntimeError:
        return float("nan")
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu), args)
    analysis = jax.jit(fn).lower(*abstract).cost_analysis()
    if isinstance(analysis, list):  # older JAX returned one dict per program
        analysis = analysis[0]
    return float(analysis.get("flops", 0.0)) if analysis else 0.0


def time_calls(fn, args_fn, repeats: int, warmup: int) -> float:
    """Median seconds per call; `args_fn()` supplies fresh arguments (donated buffers)."""
    out = None
    for _ in range(warmup):
        out = fn(*args_fn(out))
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args_fn(out))
        jax.block_until_ready(out)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(dtype: Any, size: int, repeats: int) -> float:
    """Measured TFLOP/s of a size x size matmul chain in `dtype`."""
    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype)
    chain = 8
    fn = jax.jit(lambda a, b: jax.lax.fori_loop(0, chain, lambda _, x: (x @ b) * 0.5, a))
    seconds = time_calls(fn, lambda _: (a, b), repeats, 2)
    return 2.0 * size**3 * chain / seconds / 1e12


def make_train_step(model, tx):
    def loss_fn(params, batch_stats, images, labels):
        out, updates = model.apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        loss = losses.cross_entropy(out["logits"], labels, 0.1)
        loss = loss + losses.batch_hard_triplet(out["global"], labels, 0.3)
        return loss, updates["batch_stats"]

    def train_step(state, images, labels):
        params, batch_stats, opt_state = state
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, batch_stats), grads = grad_fn(params, batch_stats, images, labels)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

    return train_step


def bench_config(
    name: str, dtype_name: str, variables: Any, size_HW: tuple[int, int], args: argparse.Namespace
) -> dict[str, Any]:
    """Times one (config, dtype) on its own copy of `variables` (the train step donates it)."""
    height, width = size_HW
    model = get_config(name).build(num_classes=args.num_classes, dtype=DTYPES[dtype_name])
    variables = jax.tree.map(jnp.copy, variables)
    tx = optax.adam(3.5e-4)
    rng = np.random.default_rng(0)
    tb, ib = args.train_batch, args.infer_batch
    images_t = jnp.asarray(rng.random((tb, height, width, 3), np.float32))
    labels_t = jnp.asarray(np.repeat(np.arange(tb // 4), 4)[:tb] % args.num_classes, jnp.int32)
    images_i = jnp.asarray(rng.random((ib, height, width, 3), np.float32))

    infer = jax.jit(lambda v, x: model.apply(v, x, train=False)["features"])
    infer_flops = flops_of(infer, variables, images_i)
    start = time.perf_counter()
    infer_compiled = infer.lower(variables, images_i).compile()
    infer_compile_s = time.perf_counter() - start
    infer_s = time_calls(infer_compiled, lambda _: (variables, images_i), args.repeats, 1)

    # The train step donates its state: from here on `variables` must not be used.
    step = jax.jit(make_train_step(model, tx), donate_argnums=0)
    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
    train_flops = flops_of(make_train_step(model, tx), state, images_t, labels_t)
    start = time.perf_counter()
    train_compiled = step.lower(state, images_t, labels_t).compile()
    train_compile_s = time.perf_counter() - start

    def train_args(out):
        nonlocal state
        if out is not None:
            state = out[0]
        return state, images_t, labels_t

    train_s = time_calls(train_compiled, train_args, args.repeats, args.warmup)

    return {
        "config": name,
        "dtype": dtype_name,
        "size": f"{height}x{width}",
        "train_gflop_per_image": train_flops / tb / 1e9,
        "infer_gflop_per_image": infer_flops / ib / 1e9,
        "train_ips": tb / train_s,
        "train_tflops": train_flops / train_s / 1e12,
        "infer_ips": ib / infer_s,
        "infer_tflops": infer_flops / infer_s / 1e12,
        "compile_s": (infer_compile_s, train_compile_s),
    }


def main() -> None:
    on_cpu = jax.default_backend() == "cpu"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="cpu-tiny,cpu-small" if on_cpu else "resnet50")
    parser.add_argument("--dtypes", default="float32" if on_cpu else "float32,bfloat16")
    parser.add_argument("--train-batch", type=int, default=32 if on_cpu else 64)
    parser.add_argument("--infer-batch", type=int, default=128 if on_cpu else 256)
    parser.add_argument("--num-classes", type=int, default=751)
    parser.add_argument("--repeats", type=int, default=5 if on_cpu else 20)
    parser.add_argument("--warmup", type=int, default=2 if on_cpu else 5)
    parser.add_argument("--matmul-size", type=int, default=1024 if on_cpu else 8192)
    parser.add_argument("--input", help="input HxW for every config (default: each config's own)")
    args = parser.parse_args()
    print(device_info.describe(), flush=True)
    dtype_names = args.dtypes.split(",")
    unknown = [d for d in dtype_names if d not in DTYPES]
    if unknown:
        parser.error(f"--dtypes: unknown {unknown}; choose from {sorted(DTYPES)}")
    try:
        configs = {name: get_config(name) for name in args.configs.split(",")}
        size = tuple(int(v) for v in args.input.lower().split("x")) if args.input else None
    except ValueError as e:
        parser.error(f"--configs / --input: {e}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        parser.error(f"--input must be HxW (e.g. 64x32): got {args.input!r}")
    for option in ("infer_batch", "num_classes", "repeats", "matmul_size"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1: got {getattr(args, option)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0: got {args.warmup}")
    if args.train_batch < 4 or args.train_batch % 4:
        parser.error(
            f"--train-batch must be a multiple of 4 (identities x 4 images for the triplet "
            f"loss): got {args.train_batch}"
        )

    peaks = {d: matmul_peak(DTYPES[d], args.matmul_size, 5) for d in dtype_names}
    for d, peak in peaks.items():
        print(
            f"measured {d} matmul peak ({args.matmul_size}^3, default precision): {peak:.2f} TFLOP/s"
        )
    header = (
        f"| config | dtype | input | train img/s (b={args.train_batch}) | train TFLOP/s (% peak) "
        f"| infer img/s (b={args.infer_batch}) | infer TFLOP/s (% peak) | GFLOP/img train, infer "
        "| compile s infer, train |"
    )
    init_key = jax.random.key(0, impl="rbg")  # compiles faster than threefry (init_variables)
    print(header)
    print("|" + "---|" * 9)
    for name, config in configs.items():
        size_HW = size or config.image_size
        variables = init_variables(config.build(num_classes=args.num_classes), init_key, size_HW)
        for d in dtype_names:
            r = bench_config(name, d, variables, size_HW, args)
            print(
                f"| {r['config']} | {d} | {r['size']} | {r['train_ips']:.1f} "
                f"| {r['train_tflops']:.3f} ({100 * r['train_tflops'] / peaks[d]:.0f} %) "
                f"| {r['infer_ips']:.1f} "
                f"| {r['infer_tflops']:.3f} ({100 * r['infer_tflops'] / peaks[d]:.0f} %) "
                f"| {r['train_gflop_per_image']:.3g}, {r['infer_gflop_per_image']:.3g} "
                f"| {r['compile_s'][0]:.1f}, {r['compile_s'][1]:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
