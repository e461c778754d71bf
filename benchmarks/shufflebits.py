"""ShuffleBits throughput against memory-bound and cryptographic baselines; prints a Markdown table.

    python benchmarks/shufflebits.py [--mib 64] [--width 2048] [--formulations]

One float32 array of --mib MiB (rows of --width) is held on the default JAX device (CPU or GPU).
Jitted rows are timed with block_until_ready, warm-up excluded, over --repeats rounds that run
every method in turn; GB/s is the median, a ratio the median of the per-round ratios (so load
changes on this shared machine hit both sides of a ratio alike). Two ways:
"fresh" (a new output buffer per call, as a plain jitted call does) and "in place" (input
donated, so the output reuses its buffer: no allocation or page faults, compute shows). The
"eager" rows call sb.encrypt outside any jit, as a script or the CLI does. Jitted rows are
compiled with the library kernels' options (512-bit vectors where the CPU has them);
--formulations adds the two kernels at XLA's default width, and other formulations. Host rows
(numpy copy, AES from `cryptography` if installed, the published per-element string method on a
sample, scaled) have one column. GB/s counts the array's bytes once.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import benes  # benchmarks/benes.py, beside this script
import device_info
import jax
import jax.numpy as jnp
import numpy as np

from invfeat import shufflebits as sb
from invfeat.shufflebits import one_time
from invfeat.shufflebits.rotations import KERNEL_OPTIONS


def best_time(fn: Callable[[], object], repeats: int) -> float:
    jax.block_until_ready(fn())  # warm-up / compile
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def seconds(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def time_jitted(
    rows: list[tuple[str, Callable, tuple, bool, dict]], x: jax.Array, repeats: int
) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, fresh-output s per round, donated in-place s per round) for each f(x, *extra).

    A row whose eager field is True is called as it is, outside any jit of ours (the library's
    own jitted kernel is then the top-level program); it has no in-place column. The others are
    jitted with the row's compiler options.
    """
    calls = []
    for _, f, extra, eager, options in rows:
        if eager:
            calls.append((lambda f=f, extra=extra: f(x, *extra), None))
            jax.block_until_ready(calls[-1][0]())
            continue
        fresh = jax.jit(f, compiler_options=options)
        inplace = jax.jit(f, donate_argnums=0, compiler_options=options)
        state = {"y": jnp.array(x, copy=True)}

        def step(inplace=inplace, state=state, extra=extra) -> jax.Array:
            state["y"] = inplace(state["y"], *extra)  # a bijection (or x + 1): safe to chain
            return state["y"]

        calls.append((lambda fresh=fresh, extra=extra: fresh(x, *extra), step))
        for call in calls[-1]:
            jax.block_until_ready(call())  # compile and warm up
    times = [([], []) for _ in calls]
    for _ in range(repeats):
        for (fresh, step), (t_fresh, t_inplace) in zip(calls, times, strict=True):
            t_fresh.append(seconds(fresh))
            if step is not None:
                t_inplace.append(seconds(step))
    return [
        (name, np.array(t_fresh), np.array(t_inplace) if t_inplace else None)
        for (name, *_), (t_fresh, t_inplace) in zip(rows, times, strict=True)
    ]


def paired_ratio(ceiling: np.ndarray, t: np.ndarray) -> float:
    """Median over rounds of (ceiling's time / t) in the same round: load drift cancels."""
    return float(np.median(ceiling / t))


def formulations(key: sb.Key) -> dict[str, Callable]:
    """Alternative bit-permutation formulations of the same static key (bit-exact)."""
    n = 32
    src = 31 - key.to_index_array()[31 - np.arange(n)]
    u32 = np.uint32

    def shift_groups(u: jax.Array) -> jax.Array:
        out, dist = jnp.zeros_like(u), np.arange(n) - src
        for d in np.unique(dist):
            m = u32(sum(1 << int(src[j]) for j in np.nonzero(dist == d)[0]))
            out |= (u & m) << u32(d) if d >= 0 else (u & m) >> u32(-d)
        return out

    def per_bit(u: jax.Array) -> jax.Array:
        out = jnp.zeros_like(u)
        for j in range(n):
            out |= ((u >> u32(src[j])) & u32(1)) << u32(j)
        return out

    inv = np.argsort(src)
    b = np.arange(1 << 16, dtype=np.uint64)
    tables = []
    for half in range(2):
        t = np.zeros_like(b)
        for i in range(16):
            t |= ((b >> np.uint64(i)) & np.uint64(1)) << np.uint64(inv[16 * half + i])
        tables.append(jnp.asarray(t.astype(np.uint32)))

    def lut16(u: jax.Array) -> jax.Array:
        return tables[0][u & u32(0xFFFF)] | tables[1][u >> u32(16)]

    stages = [
        (d, u32(m))
        for d, m in zip(benes.benes_shifts(n), benes.benes_masks(src[None], np)[0], strict=True)
        if m
    ]

    def benes_network(u: jax.Array) -> jax.Array:
        return benes.delta_swaps(u, tuple(d for d, _ in stages), [m for _, m in stages])

    def wrap(g: Callable) -> Callable:
        return lambda x: jax.lax.bitcast_convert_type(
            g(jax.lax.bitcast_convert_type(x, jnp.uint32)), jnp.float32
        )

    return {
        "  static, Benes network of delta swaps (previous kernel)": wrap(benes_network),
        "  shift groups (out OR= (x & m_d) << d)": wrap(shift_groups),
        "  per-bit gather (32 shift/and/or)": wrap(per_bit),
        "  16-bit lookup tables (2 gathers)": wrap(lut16),
    }


def one_time_formulations(secret: sb.Secret) -> dict[str, Callable]:
    """Other one-time kernels (same ciphertext as the library's masked rotations)."""
    u32 = np.uint32
    words = jnp.asarray(secret.words())

    def benes_routed(u: jax.Array, nonce: jax.Array) -> jax.Array:
        src = sb.one_time_permutation(secret, nonce, 32)
        masks = jax.lax.optimization_barrier(benes.benes_masks(src, jnp))[..., None, :]
        stages = [masks[..., k] for k in range(masks.shape[-1])]
        return benes.delta_swaps(u, benes.benes_shifts(32), stages)

    def per_bit(u: jax.Array, nonce: jax.Array) -> jax.Array:
        rank = one_time._one_time_ranks(words, nonce, 32).T  # [32, V]
        rank = jax.lax.optimization_barrier(rank.astype(jnp.uint32))
        out = jnp.zeros_like(u)
        for i in range(32):
            out |= ((u >> u32(i)) & u32(1)) << rank[i][:, None]
        return out

    def wrap(g: Callable) -> Callable:
        return lambda x, n: jax.lax.bitcast_convert_type(
            g(jax.lax.bitcast_convert_type(x, jnp.uint32), n), jnp.float32
        )

    return {
        "  one-time, per-vector Benes routing (previous kernel)": wrap(benes_routed),
        "  one-time, per-bit variable shifts (32 x 4 ops)": wrap(per_bit),
    }


def host_rows(x_np: np.ndarray, sample: int, repeats: int) -> list[tuple[str, float | None, str]]:
    part = x_np.ravel()[:sample].view(np.uint32)
    index_array = sb.Key.from_seed(0).to_index_array()
    t0 = time.perf_counter()
    sb.published_string_encrypt(part, index_array)
    scaled = (time.perf_counter() - t0) * x_np.size / part.size
    rows: list[tuple[str, float | None, str]] = [
        ("published string method (host, scaled)", scaled, f"{part.size} floats timed"),
        ("numpy copy (host)", best_time(lambda: x_np.copy(), repeats), ""),
    ]
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        note = "skipped: cryptography not installed"
        return rows + [(f"AES-256-{m} (host)", None, note) for m in ("GCM", "CTR")]
    data = x_np.tobytes()
    key, nonce = AESGCM.generate_key(bit_length=256), b"\0" * 12
    gcm = AESGCM(key)
    ctr = Cipher(algorithms.AES(key), modes.CTR(b"\0" * 16))
    return rows + [
        (
            "AES-256-GCM (cryptography, host)",
            best_time(lambda: gcm.encrypt(nonce, data, None), repeats),
            "",
        ),
        (
            "AES-256-CTR (cryptography, host)",
            best_time(lambda: ctr.encryptor().update(data), repeats),
            "",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--width", type=int, default=2048, help="feature vector length")
    parser.add_argument("--repeats", type=int, default=9, help="timed rounds (median)")
    parser.add_argument("--sample", type=int, default=20000, help="floats for the string method")
    parser.add_argument("--formulations", action="store_true", help="add alternative kernels")
    args = parser.parse_args()
    if args.sample < 1:
        parser.error(f"--sample must be >= 1: got {args.sample}")
    print(device_info.describe(), flush=True)

    rows_n = args.mib * (1 << 20) // 4 // args.width
    if rows_n < 1 or args.repeats < 1:
        parser.error(f"--mib {args.mib} holds no row of --width {args.width}, or --repeats < 1")
    x_np = np.random.default_rng(0).standard_normal((rows_n, args.width), dtype=np.float32)
    x = jax.device_put(x_np)
    nbytes = x_np.nbytes
    device = jax.devices()[0]
    key, secret = sb.Key.from_seed(0), sb.Secret.generate()
    nonces = jax.device_put(sb.fresh_nonces(rows_n))

    static, one_time = (lambda v: sb.encrypt(v, key)), (lambda v, n: sb.encrypt(v, secret, n))
    wide = KERNEL_OPTIONS  # the library's kernels' options (512-bit vectors), for every jitted row
    rows: list[tuple[str, Callable, tuple, bool, dict]] = [
        ("jitted x + 1 (memory-bound ceiling)", lambda v: v + 1, (), False, wide),
        ("jitted device copy (v.copy())", lambda v: v.copy(), (), False, wide),
        ("ShuffleBits static key (masked rotations, jit)", static, (), False, wide),
        (f"ShuffleBits one-time ({args.width}-d vectors, jit)", one_time, (nonces,), False, wide),
        ("eager sb.encrypt(x, key) (the library's own jit)", static, (), True, wide),
        (
            "eager sb.encrypt(x, secret, nonces) (the library's own jit)",
            one_time,
            (nonces,),
            True,
            wide,
        ),
    ]
    if args.formulations:
        rows += [
            ("  static key, XLA's default vector width", static, (), False, {}),
            ("  one-time, XLA's default vector width", one_time, (nonces,), False, {}),
        ]
        rows += [(name, f, (), False, wide) for name, f in formulations(key).items()]
        rows += [(n, f, (nonces,), False, wide) for n, f in one_time_formulations(secret).items()]
        static_reference = np.asarray(sb.encrypt(x, key)).view(np.uint32)
        for name, f in formulations(key).items():
            got = np.asarray(jax.jit(f)(x)).view(np.uint32)
            assert np.array_equal(got, static_reference), f"{name.strip()}: not the library's"
        reference = np.asarray(sb.encrypt(x, secret, nonces)).view(np.uint32)
        for name, f in one_time_formulations(secret).items():
            got = np.asarray(jax.jit(f)(x, nonces)).view(np.uint32)
            assert np.array_equal(got, reference), f"{name.strip()}: not the library's ciphertext"
    results = time_jitted(rows, x, args.repeats)
    ceiling = results[0][1:]
    gbs = lambda t: nbytes / float(np.median(t)) / 1e9

    print(
        f"\nShuffleBits on {device.device_kind} ({device.platform}), "
        f"{nbytes >> 20} MiB float32 as {rows_n} x {args.width}; medians of {args.repeats} "
        f"interleaved rounds, ratios paired by round (host rows: best of {args.repeats})\n"
    )
    print("| method | GB/s fresh | ratio to x + 1 | GB/s in place | ratio to x + 1 | note |")
    print("|---|---:|---:|---:|---:|---|")
    for name, t_fresh, t_inplace in results:
        inplace = "- | -"
        if t_inplace is not None and "copy" not in name:  # a donated copy is a no-op alias
            inplace = f"{gbs(t_inplace):.2f} | {paired_ratio(ceiling[1], t_inplace):.3f}"
        fresh = f"{gbs(t_fresh):.2f} | {paired_ratio(ceiling[0], t_fresh):.3f}"
        print(f"| {name} | {fresh} | {inplace} | |")
    host = host_rows(x_np, args.sample, args.repeats)
    for name, t, note in host:
        if t is None:
            print(f"| {name} | - | - | - | - | {note} |")
        else:
            print(
                f"| {name} | {nbytes / t / 1e9:.4g} | {np.median(ceiling[0]) / t:.4g} | | | {note} |"
            )
    published = [t for name, t, _ in host if name.startswith("published") and t]
    if published:
        fresh, inplace = (published[0] / float(np.median(t)) for t in results[2][1:])
        print(
            f"\nstatic-key ShuffleBits vs the published string method: {fresh:,.0f}x fresh, "
            f"{inplace:,.0f}x in place"
        )


if __name__ == "__main__":
    main()
