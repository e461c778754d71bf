"""Stream mode (ChaCha20) throughput against a device copy, ShuffleBits and OpenSSL; and its cost
fused into a re-ID serving step. Prints Markdown tables.

    python benchmarks/stream.py [--mib 64] [--width 2048]               # CPU: cpu-small victim
    python benchmarks/stream.py --mib 1024 --serve-config resnet50 --serve-dtype bfloat16  # GPU

One float32 array of --mib MiB (rows of --width, one vector per row, a fresh nonce per row) is held
on the default JAX device. Every method encrypts that same array: `sb.encrypt` with a `StreamKey`
(stream mode), with a `Secret` (one-time ShuffleBits) and with a static `Key`, called eagerly (the
library's own jitted kernels, as a script or the CLI calls them); the references are jitted
`x + 1` and `x.copy()`, each with a fresh output buffer (read once, write once: the bandwidth a
fused elementwise kernel can reach). On the CPU backend OpenSSL's ChaCha20 (through
`cryptography`, if installed) encrypts the same bytes on the host, as one stream over the whole
array and as one stream per vector (one `Cipher` per row, as stream mode's per-vector nonces
require). Before anything is timed the stream ciphertext must decrypt to the input bit for bit,
and its first and last rows must equal OpenSSL's (when `cryptography` is there); the ShuffleBits
rows must decrypt too. After --warmup untimed calls each, --repeats rounds run every method in
turn (interleaved, so load changes on a shared machine hit all alike). The table gives the best
round, the spread (best-worst), GB/s at the best (the array's bytes counted once), the ratio of
best times to `x + 1` and the median of the per-round ratios (paired).

The serving step: the --serve-config re-ID model's features function (random weights) on a batch
of --serve-batch images of its input size, jitted as is and as `with_encryption(features_fn,
stream_key)` with fresh nonces (the nonce keyword), timed in interleaved rounds; prints the cost
stream mode adds in percent of the step. --serve-batch 0 skips it.
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Callable

import device_info  # benchmarks/device_info.py, beside this script
import jax
import jax.numpy as jnp
import numpy as np

from invfeat import shufflebits as sb
from invfeat.models.reid import CONFIGS, get_config, init_variables, make_features_fn

Timed = Callable[[], object]  # one call, finished (blocked on) when it returns
OPENSSL = (
    "OpenSSL ChaCha20, one stream (cryptography, host)",
    "OpenSSL ChaCha20, one stream per vector (host)",
)


def chacha20_counter_and_nonce(nonce: np.ndarray) -> bytes:
    """`algorithms.ChaCha20`'s 16-byte nonce for a stream-mode vector: block counter 1 (RFC 8439
    section 2.8), then the vector's three nonce words little-endian."""
    return struct.pack("<I", 1) + np.asarray(nonce, "<u4").tobytes()


def openssl_rows(
    x_np: np.ndarray, nonces: np.ndarray, key: bytes
) -> tuple[list[tuple[str, Timed]], Callable[[int], bytes]] | str:
    """The OpenSSL timed calls and a per-row encryptor, or why there are none."""
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    except ImportError:
        return "skipped: cryptography not installed"
    data = x_np.tobytes()
    row_bytes = x_np.shape[-1] * x_np.itemsize
    views = [memoryview(data)[i * row_bytes : (i + 1) * row_bytes] for i in range(len(x_np))]
    ivs = [chacha20_counter_and_nonce(n) for n in nonces]

    def one_row(i: int) -> bytes:
        return Cipher(algorithms.ChaCha20(key, ivs[i]), mode=None).encryptor().update(views[i])

    def one_stream() -> bytes:
        return Cipher(algorithms.ChaCha20(key, ivs[0]), mode=None).encryptor().update(data)

    def per_vector() -> list[bytes]:
        return [one_row(i) for i in range(len(views))]

    return list(zip(OPENSSL, (one_stream, per_vector), strict=True)), one_row


def same_bits(a: jax.Array, b: jax.Array) -> bool:
    as_u32 = lambda v: jax.lax.bitcast_convert_type(v, jnp.uint32)
    return bool(jnp.array_equal(as_u32(a), as_u32(b)))


def rounds(calls: list[Timed], repeats: int, warmup: int) -> np.ndarray:
    """Seconds [repeats, len(calls)]: after `warmup` untimed calls each, every call in turn."""
    for call in calls:
        for _ in range(warmup):
            call()
    times = np.zeros((repeats, len(calls)))
    for r in range(repeats):
        for i, call in enumerate(calls):
            t0 = time.perf_counter()
            call()
            times[r, i] = time.perf_counter() - t0
    return times


def throughput(args: argparse.Namespace, cpu: bool) -> None:
    rows_n = args.mib * (1 << 20) // 4 // args.width
    x_np = np.random.default_rng(0).standard_normal((rows_n, args.width), dtype=np.float32)
    x = jax.device_put(x_np)
    nonces_np = sb.fresh_nonces(rows_n)
    nonces = jax.device_put(nonces_np)
    stream_key, secret, key = sb.StreamKey.generate(), sb.Secret.generate(), sb.Key.from_seed(0)

    # A wrong kernel must not be timed: round trips, and stream mode against OpenSSL.
    ciphertext = sb.encrypt(x, stream_key, nonces)
    assert not same_bits(ciphertext, x), "stream mode left the input as it was"
    assert same_bits(sb.decrypt(ciphertext, stream_key, nonces), x), "stream: no round trip"
    for name, k, n in (("one-time", secret, nonces), ("static key", key, None)):
        assert same_bits(sb.decrypt(sb.encrypt(x, k, n), k, n), x), f"{name}: no round trip"
    openssl = openssl_rows(x_np, nonces_np, stream_key.to_bytes())
    checked = "no OpenSSL check (cryptography not installed)"
    if not isinstance(openssl, str):
        for i in sorted({0, rows_n - 1}):
            expected = np.frombuffer(openssl[1](i), np.float32)
            got = np.asarray(ciphertext[i])
            assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (
                f"stream mode row {i} differs from OpenSSL's ChaCha20"
            )
        checked = "first and last rows equal OpenSSL's ChaCha20"
    del ciphertext
    print(f"checks: every mode decrypts to the input bit for bit; stream mode's {checked}")

    done = jax.block_until_ready
    plus_one, copy = jax.jit(lambda v: v + 1), jax.jit(lambda v: v.copy())
    rows: list[tuple[str, Timed | None, str]] = [
        ("jitted x + 1, fresh output (reference)", lambda: done(plus_one(x)), ""),
        ("jitted device copy (x.copy())", lambda: done(copy(x)), ""),
        (
            "stream mode (StreamKey, ChaCha20 in jnp)",
            lambda: done(sb.encrypt(x, stream_key, nonces)),
            "fresh nonce per row",
        ),
        ("ShuffleBits one-time (Secret)", lambda: done(sb.encrypt(x, secret, nonces)), ""),
        ("ShuffleBits static key (Key)", lambda: done(sb.encrypt(x, key)), ""),
    ]
    if not cpu:
        rows += [
            (name, None, "skipped: host cipher, not timed on a GPU backend") for name in OPENSSL
        ]
    elif isinstance(openssl, str):
        rows += [(name, None, openssl) for name in OPENSSL]
    else:
        rows += [(name, call, "") for name, call in openssl[0]]
    timed = [call for _, call, _ in rows if call is not None]
    t = rounds(timed, args.repeats, args.warmup)
    column = {name: t[:, i] for i, name in enumerate(n for n, c, _ in rows if c is not None)}

    dev = jax.devices()[0]
    print(
        f"\nStream mode on {dev.device_kind} ({dev.platform}), {x_np.nbytes >> 20} MiB float32 as "
        f"{rows_n} x {args.width}; best of {args.repeats} interleaved rounds after "
        f"{args.warmup} warm-up call(s) each\n"
    )
    print(
        "| method | best ms | spread ms (best-worst) | GB/s (best) | ratio to x + 1 (best) "
        "| ratio to x + 1 (paired median) | note |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    reference = column[rows[0][0]]
    for name, _, note in rows:
        if name not in column:
            print(f"| {name} | - | - | - | - | - | {note} |")
            continue
        s = column[name]
        print(
            f"| {name} | {s.min() * 1e3:.2f} | {s.min() * 1e3:.2f}-{s.max() * 1e3:.2f} | "
            f"{x_np.nbytes / s.min() / 1e9:.2f} | {reference.min() / s.min():.3f} | "
            f"{np.median(reference / s):.3f} | {note} |"
        )
    stream = column[rows[2][0]]
    copy_t = column[rows[1][0]]
    line = (
        f"\nstream mode / device copy: {copy_t.min() / stream.min():.3f} (best), "
        f"{np.median(copy_t / stream):.3f} (paired median); GPU target >= 0.5"
    )
    if OPENSSL[1] in column:
        openssl_t = column[OPENSSL[1]]
        line += (
            f"\nstream mode / OpenSSL per vector: {openssl_t.min() / stream.min():.3f} (best), "
            f"{np.median(openssl_t / stream):.3f} (paired median); CPU target >= 1"
        )
    print(line)


def serving_step(args: argparse.Namespace) -> None:
    config = get_config(args.serve_config)
    model = config.build(dtype=jnp.dtype(args.serve_dtype))
    size = config.image_size
    variables = init_variables(model, jax.random.key(0, impl="rbg"), size)
    images = jax.device_put(
        np.random.default_rng(0).random((args.serve_batch, *size, 3), np.float32)
    )
    features_fn = make_features_fn(model)
    stream_key = sb.StreamKey.generate()
    nonces = jax.device_put(sb.fresh_nonces(args.serve_batch))
    encrypted_fn = sb.with_encryption(features_fn, stream_key)
    plain = jax.jit(features_fn)
    encrypted = jax.jit(lambda v, x, n: encrypted_fn(v, x, nonce=n))
    compile_s = []  # the compiled executables are the ones timed (no second compile)
    for f, a in ((plain, (variables, images)), (encrypted, (variables, images, nonces))):
        t0 = time.perf_counter()
        compiled = f.lower(*a).compile()
        compile_s.append(time.perf_counter() - t0)
        plain, encrypted = (compiled, encrypted) if f is plain else (plain, compiled)
    features = plain(variables, images)
    ciphertext = encrypted(variables, images, nonces)
    assert not same_bits(ciphertext, features), "fused stream mode left the features as they were"
    assert same_bits(sb.decrypt(ciphertext, stream_key, nonces), features), (
        "the fused ciphertext does not decrypt to the plain features"
    )
    done = jax.block_until_ready
    steps = {
        "plain features_fn": lambda: done(plain(variables, images)),
        "with_encryption(features_fn, stream_key)": lambda: done(
            encrypted(variables, images, nonces)
        ),
        f"sb.encrypt alone on the features {list(features.shape)} (eager)": lambda: done(
            sb.encrypt(features, stream_key, nonces)
        ),
    }
    t = rounds(list(steps.values()), args.repeats, args.warmup)
    dev = jax.devices()[0]
    print(
        f"\nServing step: {args.serve_config} re-ID features, batch {args.serve_batch}, "
        f"{size[0]}x{size[1]}, {args.serve_dtype} backbone, {features.shape[-1]}-d "
        f"{features.dtype} features, on {dev.device_kind}; best of {args.repeats} interleaved "
        f"rounds after {args.warmup} warm-up call(s) each; checked: decrypts to the plain features\n"
    )
    print("| serving step | best ms | spread ms (best-worst) | median ms | compile s |")
    print("|---|---:|---:|---:|---:|")
    for name, s, c in zip(steps, t.T, [*compile_s, None], strict=True):
        print(
            f"| {name} | {s.min() * 1e3:.3f} | {s.min() * 1e3:.3f}-{s.max() * 1e3:.3f} | "
            f"{np.median(s) * 1e3:.3f} | {'-' if c is None else f'{c:.1f}'} |"
        )
    base, enc, alone = t[:, 0], t[:, 1], t[:, 2]
    print(
        f"\nstream mode adds {100 * (enc.min() / base.min() - 1):+.2f} % of the step (best "
        f"against best), {100 * np.median((enc - base) / base):+.2f} % (median of per-round "
        f"differences), {1e3 * (enc.min() - base.min()):+.3f} ms; encrypting the features alone "
        f"takes {100 * alone.min() / base.min():.2f} % of the plain step (best against best)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="array size in MiB (float32)")
    parser.add_argument("--width", type=int, default=2048, help="vector (row) length")
    parser.add_argument("--repeats", type=int, default=7, help="timed interleaved rounds")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each method")
    parser.add_argument(
        "--serve-config", default="cpu-small", choices=sorted(CONFIGS), help="re-ID model"
    )
    parser.add_argument("--serve-batch", type=int, default=256, help="images; 0 skips the step")
    parser.add_argument("--serve-dtype", default="float32", choices=("float32", "bfloat16"))
    args = parser.parse_args()
    for option, least in (("mib", 1), ("width", 1), ("repeats", 1), ("warmup", 0)):
        if getattr(args, option) < least:
            parser.error(f"--{option} must be >= {least}: got {getattr(args, option)}")
    if args.serve_batch < 0:
        parser.error(
            f"--serve-batch must be >= 0 (0 skips the serving step): got {args.serve_batch}"
        )
    if args.mib * (1 << 20) // 4 // args.width < 1:
        parser.error(f"--mib {args.mib} holds no row of --width {args.width}")
    print(device_info.describe(), flush=True)

    throughput(args, cpu=jax.default_backend() == "cpu")
    if args.serve_batch:
        serving_step(args)


if __name__ == "__main__":
    main()
