"""What a synthetic pedestrian looks like: attributes in one canonical form, plus identity traits.

Both tables' attribute sets map to one `Appearance` (what the renderer draws). `Traits` are what
the tables do not say (body, skin, textures, accessories), drawn per identity: they keep
identities with equal attributes apart.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping

import numpy as np

# Named colours (RGB) used for clothing; each identity jitters its shade.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 32),
    "white": (232, 232, 228),
    "red": (196, 30, 36),
    "purple": (112, 48, 150),
    "yellow": (232, 204, 40),
    "gray": (128, 128, 128),
    "blue": (36, 72, 180),
    "green": (36, 136, 60),
    "brown": (112, 72, 36),
    "pink": (236, 140, 176),
    "orange": (240, 128, 24),
    "teal": (0, 140, 140),
    "beige": (206, 186, 140),
}
# Colours the tables never annotate: what an identity without any colour flag wears.
OFF_LIST_COLOURS = ("orange", "teal", "beige")

LOWER_KINDS = ("pants", "shorts", "long_dress", "short_dress")
AGES = ("young", "teenager", "adult", "old")
SKIN_TONES = np.array(
    [
        (247, 214, 186),
        (234, 190, 150),
        (214, 164, 122),
        (184, 128, 88),
        (142, 92, 60),
        (96, 62, 42),
    ],
    np.float32,
)
HAIR_COLOURS = np.array([(24, 20, 18), (58, 38, 24), (96, 64, 36), (150, 110, 60), (200, 170, 110)])
BOOT_COLOURS = ((26, 22, 20), (104, 62, 30), (168, 118, 66), (92, 88, 84))
TEXTURES = ("plain", "plain", "vstripes", "hstripes", "check", "logo", "collar")
ACCESSORIES = ("none", "none", "glasses", "scarf", "belt", "watch")


@dataclasses.dataclass(frozen=True)
class Appearance:
    """The visible attributes of a pedestrian, independent of which table they came from."""

    female: bool
    hair_long: bool
    sleeve_short: bool
    coat_long: bool
    lower: str  # one of LOWER_KINDS
    hat: bool
    backpack: bool
    bag: bool
    handbag: bool
    age: int  # index into AGES
    boots: bool
    shoes_light: bool
    up_colours: tuple[str, ...]  # empty: none of the annotated colours
    down_colours: tuple[str, ...]

    def key(self) -> tuple:
        return dataclasses.astuple(self)


@dataclasses.dataclass(frozen=True)
class Traits:
    """Identity-specific looks beyond the attributes; fixed per identity."""

    height: float  # fraction of the crop an adult of this build fills
    width: float  # horizontal build factor
    head: float  # head size factor
    hip_fraction: float  # where the hip sits between shoulders and soles
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: int
    up_rgb: tuple[tuple[int, int, int], ...]
    down_rgb: tuple[tuple[int, int, int], ...]
    texture: str
    texture_rgb: tuple[int, int, int]
    shoe_rgb: tuple[int, int, int]
    hat_rgb: tuple[int, int, int]
    hat_style: int
    bag_rgb: tuple[int, int, int]
    handbag_rgb: tuple[int, int, int]
    boot_rgb: tuple[int, int, int]
    accessory: str
    accessory_rgb: tuple[int, int, int]
    arm_swing: float
    stride: float

    def key(self) -> tuple:
        return dataclasses.astuple(self)


def _flags(row: Mapping[str, int], prefix: str, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n for n in names if row.get(prefix + n, 0) == 1)


def _colour_names(row: Mapping[str, int], prefix: str) -> tuple[str, ...]:
    names = tuple(k[len(prefix) :] for k in row if k.startswith(prefix) and k[len(prefix) :])
    return _flags(row, prefix, tuple(n for n in names if n in COLOURS))


def appearance_from_row(
    dataset: str, row: Mapping[str, int], rng: np.random.Generator
) -> Appearance:
    """Canonical appearance of one table row (class indices); `rng` fills what the table omits."""
    female = row["gender"] == 1
    if dataset == "market1501":
        dress, short = row["clothes"] == 0, row["down"] == 1
        lower = (
            ("short_dress" if short else "long_dress")
            if dress
            else ("shorts" if short else "pants")
        )
        return Appearance(
            female=female,
            hair_long=row["hair"] == 1,
            sleeve_short=row["up"] == 1,
            coat_long=False,
            lower=lower,
            hat=row["hat"] == 1,
            backpack=row["backpack"] == 1,
            bag=row["bag"] == 1,
            handbag=row["handbag"] == 1,
            age=int(row["age"]),
            boots=False,
            shoes_light=bool(rng.random() < 0.4),
            up_colours=_colour_names(row, "up"),
            down_colours=_colour_names(row, "down"),
        )
    if dataset == "dukemtmc_reid":
        # Duke is winter footage: long sleeves and trousers unless the identity's draw says otherwise.
        return Appearance(
            female=female,
            hair_long=bool(rng.random() < (0.75 if female else 0.05)),
            sleeve_short=bool(rng.random() < 0.08),
            coat_long=row["top"] == 1,
            lower="long_dress" if female and rng.random() < 0.08 else "pants",
            hat=row["hat"] == 1,
            backpack=row["backpack"] == 1,
            bag=row["bag"] == 1,
            handbag=row["handbag"] == 1,
            age=2,
            boots=row["boots"] == 1,
            shoes_light=row["shoes"] == 1,
            up_colours=_colour_names(row, "up"),
            down_colours=_colour_names(row, "down"),
        )
    raise ValueError(f"unknown attribute dataset {dataset!r}: expected market1501 or dukemtmc_reid")


def _shade(rng: np.random.Generator, name: str) -> tuple[int, int, int]:
    base = np.array(COLOURS[name], np.float32)
    rgb = base * rng.uniform(0.82, 1.12) + rng.normal(0.0, 10.0, 3)
    return tuple(int(v) for v in np.clip(rgb, 0, 255))


def _rgb(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _contrasting(rng: np.random.Generator, against: np.ndarray) -> tuple[int, int, int]:
    """A random colour whose brightness differs clearly from `against` (hat vs hair)."""
    rgb = rng.integers(20, 236, 3).astype(np.float32)
    if abs(rgb.mean() - float(np.mean(against))) < 70:
        rgb = np.clip(rgb + (90 if np.mean(against) < 128 else -90), 0, 255)
    return tuple(int(v) for v in rgb)


def sample_traits(app: Appearance, rng: np.random.Generator) -> Traits:
    """Draw the identity-specific traits of one identity."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.94, 1.04)
    if app.age == 3:
        grey = rng.uniform(150, 230)
        hair = np.array([grey, grey, grey * 0.97])
    else:
        hair = HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=[0.4, 0.3, 0.15, 0.1, 0.05])]
        hair = hair * rng.uniform(0.85, 1.15)
    up = app.up_colours or (OFF_LIST_COLOURS[rng.integers(len(OFF_LIST_COLOURS))],)
    down = app.down_colours or (OFF_LIST_COLOURS[rng.integers(len(OFF_LIST_COLOURS))],)
    shoe = rng.uniform(175, 240) if app.shoes_light else rng.uniform(15, 70)
    return Traits(
        height=float(rng.uniform(0.84, 0.94)),
        width=float(rng.uniform(0.86, 1.16)),
        head=float(rng.uniform(0.92, 1.08)),
        hip_fraction=float(rng.uniform(0.37, 0.43)),
        skin=tuple(int(v) for v in np.clip(skin, 0, 255)),
        hair=tuple(int(v) for v in np.clip(hair, 0, 255)),
        hair_style=int(rng.integers(3)),
        up_rgb=tuple(_shade(rng, c) for c in up),
        down_rgb=tuple(_shade(rng, c) for c in down),
        texture=TEXTURES[rng.integers(len(TEXTURES))],
        texture_rgb=_rgb(rng),
        shoe_rgb=tuple(int(v) for v in np.clip(shoe + rng.normal(0, 12, 3), 0, 255)),
        hat_rgb=_contrasting(rng, hair),
        hat_style=int(rng.integers(2)),
        bag_rgb=_rgb(rng, 10, 200),
        handbag_rgb=_contrasting(rng, np.array(COLOURS[down[0]])),
        boot_rgb=tuple(int(v) for v in BOOT_COLOURS[rng.integers(len(BOOT_COLOURS))]),
        accessory=ACCESSORIES[rng.integers(len(ACCESSORIES))],
        accessory_rgb=_rgb(rng),
        arm_swing=float(rng.uniform(0.3, 1.0)),
        stride=float(rng.uniform(0.6, 1.0)),
    )


def identity_rng(seed: int, domain: str, identity: int) -> np.random.Generator:
    """The generator of one identity's hidden draws: fixed by (seed, domain, identity)."""
    return np.random.default_rng([seed, zlib.crc32(domain.encode()), identity])


# The canonical attributes as a table of class indices, for domains without a real table (MSMT).
CANONICAL_ATTRIBUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gender", ("male", "female")),
    ("hair", ("short", "long")),
    ("up", ("long sleeve", "short sleeve")),
    ("top", ("short", "long")),
    ("lower", LOWER_KINDS),
    ("hat", ("no", "yes")),
    ("backpack", ("no", "yes")),
    ("bag", ("no", "yes")),
    ("handbag", ("no", "yes")),
    ("age", AGES),
    ("boots", ("no", "yes")),
    ("shoes", ("dark", "light")),
    *((f"up{c}", ("no", "yes")) for c in COLOURS if c not in OFF_LIST_COLOURS),
    *((f"down{c}", ("no", "yes")) for c in COLOURS if c not in OFF_LIST_COLOURS),
)


def canonical_values(app: Appearance) -> np.ndarray:
    """Class indices of `app` in the order of CANONICAL_ATTRIBUTES."""
    fixed = {
        "gender": app.female,
        "hair": app.hair_long,
        "up": app.sleeve_short,
        "top": app.coat_long,
        "lower": LOWER_KINDS.index(app.lower),
        "hat": app.hat,
        "backpack": app.backpack,
        "bag": app.bag,
        "handbag": app.handbag,
        "age": app.age,
        "boots": app.boots,
        "shoes": app.shoes_light,
    }
    values = []
    for name, _ in CANONICAL_ATTRIBUTES:
        if name in fixed:
            values.append(int(fixed[name]))
        elif name.startswith("up"):
            values.append(int(name[2:] in app.up_colours))
        else:
            values.append(int(name[4:] in app.down_colours))
    return np.array(values, np.int32)
