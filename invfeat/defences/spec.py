"""A defence by name and strength (`Defence`, frozen and JSON-able), the registry of defences
(`DEFENCES`), and `build`: the transform a serving program applies to its features inside jit."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np

from invfeat.defences import transforms
from invfeat.defences.projection import ProjectionKey, projection_matrix

Transform = Callable[..., jax.Array]  # (features [N, D], rng=None) -> features [N, D'] (D' = D, k)


def _number(name: str, strength: Any) -> float:
    if isinstance(strength, bool) or not isinstance(
        strength, int | float | np.integer | np.floating
    ):
        raise TypeError(f"{name} strength must be a number, got {type(strength).__name__}")
    if not math.isfinite(strength):
        raise ValueError(f"{name} strength must be finite, got {strength}")
    return float(strength)


def _noise_strength(strength: Any) -> float:
    value = _number("noise", strength)
    if value < 0:
        raise ValueError(f"noise strength (std / RMS) must be >= 0, got {value}")
    return value


def _bits(strength: Any) -> int:
    value = _number("quantise", strength)
    top = transforms.MAX_BITS
    if not value.is_integer() or not 1 <= value <= top:
        raise ValueError(f"quantise strength (bits) must be an int in [1, {top}], got {strength}")
    return int(value)


def _drop_fraction(strength: Any) -> float:
    value = _number("drop", strength)
    if not 0 <= value < 1:
        raise ValueError(f"drop strength (fraction dropped) must be in [0, 1), got {value}")
    return value


def _kept_fraction(strength: Any) -> float:
    value = _number("project", strength)
    if not 0 < value <= 1:
        raise ValueError(f"project strength (k / D) must be in (0, 1], got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class DefenceKind:
    """What the registry knows of one defence: its strength (meaning and check), whether it draws
    fresh randomness per call (`random`) or needs a secret (`keyed`), and what the legitimate
    user does with its output."""

    strength: str
    check: Callable[[Any], float | int]
    random: bool
    keyed: bool
    key_holder: str


DEFENCES: Mapping[str, DefenceKind] = {
    "noise": DefenceKind(
        "noise standard deviation / the vector's RMS (>= 0)",
        _noise_strength,
        random=True,
        keyed=False,
        key_holder="compares the noisy vectors directly (cosine); there is no inverse",
    ),
    "quantise": DefenceKind(
        "bits per dimension (an int in [1, 16]; 1: sign bits)",
        _bits,
        random=False,
        keyed=False,
        key_holder="compares the quantised vectors directly (cosine); there is no inverse",
    ),
    "drop": DefenceKind(
        "fraction of dimensions set to 0 (in [0, 1))",
        _drop_fraction,
        random=False,
        keyed=False,
        key_holder="compares the vectors on the kept dimensions (cosine); there is no inverse",
    ),
    "project": DefenceKind(
        "kept fraction k / D of a keyed orthogonal projection (in (0, 1])",
        _kept_fraction,
        random=False,
        keyed=True,
        key_holder="compares projected vectors (cosine, kept exactly at k = D); a new key "
        "replaces a leaked template",
    ),
}


@dataclasses.dataclass(frozen=True)
class Defence:
    """One defence: `name` (a key of `DEFENCES`) at `strength` (its meaning: `DEFENCES[name]
    .strength`; normalised to an int for quantise, a float otherwise). `seed` chooses drop's
    dimensions (`transforms.drop_mask`; public: the zeros show them) and is ignored otherwise."""

    name: str
    strength: float
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in DEFENCES:
            raise ValueError(f"unknown defence {self.name!r}; choose one of {list(DEFENCES)}")
        object.__setattr__(self, "strength", DEFENCES[self.name].check(self.strength))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"defence seed must be an int >= 0, got {self.seed!r}")

    @property
    def label(self) -> str:
        """A name for folders and tables: "noise-0.25", "quantise-4", "drop-0.5-seed1"."""
        seed = f"-seed{self.seed}" if self.name == "drop" and self.seed else ""
        return f"{self.name}-{self.strength!r}{seed}"

    @property
    def needs_rng(self) -> bool:
        """Whether the transform needs a PRNG key per call (noise of strength > 0)."""
        return DEFENCES[self.name].random and self.strength > 0

    @property
    def needs_key(self) -> bool:
        """Whether `build` needs a secret `ProjectionKey` (project)."""
        return DEFENCES[self.name].keyed

    def output_dim(self, dim: int) -> int:
        """The width of the transformed features for inputs of width `dim`."""
        if self.name != "project":
            return dim
        return transforms.rounded_count(self.strength, dim)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Defence:
        """The defence `to_dict()` gave."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"Defence: unknown fields {sorted(unknown)}")
        return cls(**data)


def sweep(points: Iterable[tuple[str, float]], seed: int = 0) -> tuple[Defence, ...]:
    """The defences of (name, strength) pairs, e.g. [("noise", 0.1), ("quantise", 2)], checked."""
    return tuple(Defence(name, strength, seed) for name, strength in points)


def _check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(f"feature width must be a positive int, got {dim!r}")
    return int(dim)


def build(defence: Defence, dim: int, *, key: ProjectionKey | None = None) -> Transform:
    """The pure `transform(features [..., dim], rng=None) -> features [..., output_dim(dim)]` of
    `defence`, for use inside `jax.jit` (e.g. after a model's features function).

    What does not change per call is made here, once: drop's mask and project's matrix (from
    `key`, a `ProjectionKey`, which project needs and the others refuse). Both are constants of
    a program that jits the transform: HLO dumps and compilation caches hold project's matrix,
    so guard them like its key. `rng`: noise of strength > 0 needs one PRNG key, or one per
    vector (`fresh_noise_keys`); noise of strength 0 ignores it; the other defences refuse it.
    """
    if not isinstance(defence, Defence):
        raise TypeError(f"build needs a Defence, got {type(defence).__name__}")
    dim = _check_dim(dim)
    if defence.needs_key and not isinstance(key, ProjectionKey):
        raise ValueError(f"{defence.name} needs a ProjectionKey (ProjectionKey.generate())")
    if not defence.needs_key and key is not None:
        raise ValueError(f"{defence.name} takes no key; a key is for project alone")
    if defence.name == "noise":
        apply = lambda x, rng: transforms.add_noise(x, rng, defence.strength)
    elif defence.name == "quantise":
        apply = lambda x, rng: transforms.quantise(x, defence.strength)
    elif defence.name == "drop":
        keep = transforms.drop_mask(dim, defence.strength, defence.seed)
        apply = lambda x, rng: transforms.drop_dims(x, keep)
    else:
        k = defence.output_dim(dim)
        if k < 1:
            raise ValueError(f"project strength {defence.strength} keeps no dimension of {dim}")
        matrix_Dk = projection_matrix(key, dim, k)
        apply = lambda x, rng: transforms.project(x, matrix_Dk)

    def transform(features: Any, rng: jax.Array | None = None) -> jax.Array:
        if np.shape(features)[-1:] != (dim,):
            raise ValueError(f"{defence.label} was built for width {dim}: got {np.shape(features)}")
        if rng is not None and not DEFENCES[defence.name].random:
            raise ValueError(f"{defence.label} draws no noise: it takes no rng")
        return apply(features, rng)

    return transform


def apply_defence(
    defence: Defence,
    features: Any,
    *,
    rng: jax.Array | None = None,
    key: ProjectionKey | None = None,
) -> jax.Array:
    """`build(defence, D, key=key)(features, rng)` for features [..., D]: one-off use (a serving
    program builds once, and project's matrix is derived at every build)."""
    return build(defence, np.shape(features)[-1], key=key)(features, rng)


def fresh_noise_keys(n: int) -> jax.Array:
    """`n` threefry PRNG keys [n] (64 bits each from os.urandom), one per served vector, so that
    no one can predict the noise and each vector's noise depends on its own key alone."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"fresh_noise_keys: n must be an int >= 0, got {n!r}")
    data = np.frombuffer(os.urandom(8 * int(n)), np.uint32).reshape(int(n), 2)
    return jax.random.wrap_key_data(data, impl="threefry2x32")
