"""Cost of fused ShuffleBits in a ResNet-50 re-ID forward pass (FastReID BoT-like, 2048-d).

    python benchmarks/shufflebits_resnet.py                      # batch 256, 256x128 (GPU)
    python benchmarks/shufflebits_resnet.py --batch 2 --height 64 --width 32 --repeats 5  # CPU

Times jit(features_fn), jit(with_encryption(features_fn, key)) and the one-time variant on the
same device-resident batch, each compiled once: the executables whose kernels are listed are the
ones timed. Warm-up excluded; --repeats rounds each run all three in turn (interleaved, so drifts
in clock or load hit all alike). Prints the median and the 10-90 % range of each, the median of
the per-round differences to plain (a paired estimate of the overhead), the compile seconds, and
the kernels of each compiled program (instructions outside fused computations, by kind) with
those the encrypted programs add. --hlo-dir writes the three optimized HLO texts.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from pathlib import Path

import device_info  # benchmarks/device_info.py, beside this script
import jax
import jax.numpy as jnp
import numpy as np

from invfeat import shufflebits as sb
from invfeat.models.reid import CONFIGS, get_config, init_variables, make_features_fn

_NOT_KERNELS = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}
# name = shape op(...); a tuple shape "(f32[..]{..}, u8[0]{0})" (cuDNN convolutions on GPU,
# multi-output fusions, while loops) has spaces in it.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\([^()]*\)|\S+) ([\w-]+)\((.*)$")


def kernels(hlo_text: str) -> list[tuple[str, str]]:
    """(kind, shape) of every instruction that runs on its own: not inside a fused computation."""
    fused = set(re.findall(r"calls=%([\w.-]+)", hlo_text))
    found, current = [], None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%([\w.-]+) ", line)
        if header and line.rstrip().endswith("{"):
            current = header.group(1)
            continue
        match = _INSTRUCTION.match(line)
        if match and current not in fused and match.group(3) not in _NOT_KERNELS:
            kind = match.group(3)
            if kind == "fusion":
                kind = "fusion:" + (re.search(r"kind=(\w+)", line) or [None, "?"])[1]
            elif kind == "custom-call":
                kind = (
                    "custom-call:" + (re.search(r'custom_call_target="([^"]+)"', line) or "??")[1]
                )
            found.append((kind, re.sub(r"\{[^}]*\}|/\*[^*]*\*/", "", match.group(2))))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", default="resnet50", choices=sorted(CONFIGS), help="a re-ID model config"
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=60, help="interleaved timed rounds")
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--hlo-dir", type=Path, help="write the optimized HLO texts here")
    args = parser.parse_args()
    for option in ("batch", "height", "width", "repeats"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be >= 1: got {getattr(args, option)}")
    print(device_info.describe(), flush=True)

    model = get_config(args.config).build(dtype=jnp.dtype(args.dtype))
    variables = init_variables(model, jax.random.key(0, impl="rbg"), (args.height, args.width))
    images = jax.device_put(
        np.random.default_rng(0).random((args.batch, args.height, args.width, 3), np.float32)
    )
    features_fn = make_features_fn(model)
    key, secret = sb.Key.generate(), sb.Secret.generate()
    nonces = jax.device_put(sb.fresh_nonces(args.batch))
    variants = {
        "plain": (jax.jit(features_fn), (variables, images)),
        "+ static-key ShuffleBits (fused)": (
            jax.jit(sb.with_encryption(features_fn, key)),
            (variables, images),
        ),
        "+ one-time ShuffleBits (fused)": (
            jax.jit(lambda v, x, n: sb.with_encryption(features_fn, secret)(v, x, nonce=n)),
            (variables, images, nonces),
        ),
    }
    compile_s = {}
    for name, (f, a) in variants.items():
        t0 = time.perf_counter()
        variants[name] = (f.lower(*a).compile(), a)
        compile_s[name] = time.perf_counter() - t0
    texts = {name: f.as_text() for name, (f, _) in variants.items()}
    for f, a in variants.values():
        for _ in range(3):
            jax.block_until_ready(f(*a))
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (f, a) in variants.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(*a))
            times[name].append(time.perf_counter() - t0)

    plain_fn, plain_args = variants["plain"]
    out = plain_fn(*plain_args)
    static_fn, static_args = variants["+ static-key ShuffleBits (fused)"]
    one_time_fn, one_time_args = variants["+ one-time ShuffleBits (fused)"]
    for name, decrypted in (
        ("static-key", sb.decrypt(static_fn(*static_args), key)),
        ("one-time", sb.decrypt(one_time_fn(*one_time_args), secret, nonces)),
    ):
        same = np.array_equal(
            np.asarray(decrypted).view(np.uint32), np.asarray(out).view(np.uint32)
        )
        assert same, f"{name}: the fused ciphertext does not decrypt to the plain features"
    dev = jax.devices()[0]
    print(
        f"\n{args.config} re-ID forward, batch {args.batch}, {args.height}x{args.width}, "
        f"{args.dtype} backbone, {out.shape[-1]}-d float32 features, on {dev.device_kind}; "
        f"{args.repeats} interleaved rounds\n"
    )
    print(
        "| forward pass | median ms | 10-90 % ms | overhead (medians) "
        "| paired overhead (median of per-round differences) | kernels | compile s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = np.array(times["plain"])
    for name, t in times.items():
        t = np.array(t)
        p10, p50, p90 = np.percentile(t, [10, 50, 90]) * 1e3
        diff = np.median(t - base) * 1e3
        share = 100 * np.median((t - base) / base)
        print(
            f"| {name} | {p50:.3f} | {p10:.3f}-{p90:.3f} | "
            f"{100 * (np.median(t) / np.median(base) - 1):+.2f} % | "
            f"{diff:+.3f} ms ({share:+.2f} %) | {len(kernels(texts[name]))} "
            f"| {compile_s[name]:.1f} |"
        )
    plain_kernels = Counter(kernels(texts["plain"]))
    print("\nKernels by kind (instructions outside fused computations):")
    for name, text in texts.items():
        counts = Counter(kind for kind, _ in kernels(text))
        print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        if name != "plain":
            for label, diff in (
                ("added vs plain", Counter(kernels(text)) - plain_kernels),
                ("gone vs plain", plain_kernels - Counter(kernels(text))),
            ):
                items = ", ".join(f"{k} {shape} x{n}" for (k, shape), n in sorted(diff.items()))
                print(f"    {label}: {items or 'none'}")
    if args.hlo_dir:
        args.hlo_dir.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
            (args.hlo_dir / f"{slug}.hlo.txt").write_text(text)
        print(f"\noptimized HLO written to {args.hlo_dir}")


if __name__ == "__main__":
    main()
