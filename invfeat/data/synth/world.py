"""The people of the synthetic domains: who they are, what they wear, which cameras see them.

synth_market's and synth_duke's people are the rows of the real attribute tables, with traits
fixed by (seed, domain, person id); synth_msmt's are recombinations of those rows.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np

from invfeat.data.attributes import Attribute, attribute_schema, load_attribute_table
from invfeat.data.synth.appearance import (
    CANONICAL_ATTRIBUTES,
    Appearance,
    Traits,
    appearance_from_row,
    canonical_values,
    identity_rng,
    sample_traits,
)
from invfeat.data.synth.scene import Camera, make_cameras


@dataclasses.dataclass(frozen=True)
class SynthDomain:
    """A synthetic re-ID domain: where its people come from and how its cameras look."""

    name: str
    table: str | None  # attribute table of its people (None: recombined, canonical attributes)
    style: str  # scene style of its cameras
    num_cameras: int
    naming: str  # file naming scheme: "market", "duke" or "msmt"

    @property
    def attributes(self) -> tuple[Attribute, ...]:
        if self.table is None:
            return tuple(Attribute(n, labels) for n, labels in CANONICAL_ATTRIBUTES)
        return attribute_schema(self.table)


DOMAINS: dict[str, SynthDomain] = {
    "synth_market": SynthDomain("synth_market", "market1501", "market", 6, "market"),
    "synth_duke": SynthDomain("synth_duke", "dukemtmc_reid", "duke", 8, "duke"),
    "synth_msmt": SynthDomain("synth_msmt", None, "msmt", 15, "msmt"),
}
ATTACK_DOMAINS = ("synth_market", "synth_duke")


@dataclasses.dataclass(frozen=True, eq=False)
class Identity:
    """One person of a domain (compare people with `key()`)."""

    identity: int  # person id as in the file names
    attributes: np.ndarray  # [A] class indices in the domain's attribute columns
    appearance: Appearance
    traits: Traits

    def key(self) -> tuple:
        """What makes this individual: its look and its traits."""
        return self.appearance.key() + self.traits.key()


def domain(name: str) -> SynthDomain:
    try:
        return DOMAINS[name]
    except KeyError:
        raise ValueError(f"unknown synthetic domain {name!r}; known: {sorted(DOMAINS)}") from None


@functools.lru_cache(maxsize=16)
def cameras(name: str, seed: int) -> tuple[Camera, ...]:
    d = domain(name)
    return make_cameras(d.style, d.num_cameras, seed)


@functools.lru_cache(maxsize=16)
def table_identities(name: str, split: str, seed: int) -> tuple[Identity, ...]:
    """The people of an attack-side domain's "train" or "test" table, in table order."""
    d = domain(name)
    if d.table is None:
        raise ValueError(f"{name} has no attribute table; use msmt_identities")
    table = load_attribute_table(d.table, split)
    people = []
    for identity, values in zip(table.identities, table.values, strict=True):
        row = {a.name: int(v) for a, v in zip(table.attributes, values, strict=True)}
        rng = identity_rng(seed, name, int(identity))
        app = appearance_from_row(d.table, row, rng)
        people.append(
            Identity(int(identity), values.astype(np.int64), app, sample_traits(app, rng))
        )
    return tuple(people)


def _attack_side(seed: int) -> list[Identity]:
    return [
        p for n in ATTACK_DOMAINS for s in ("train", "test") for p in table_identities(n, s, seed)
    ]


_GROUPS = (
    ("female", "hair_long", "age"),
    ("sleeve_short", "coat_long", "up_colours"),
    ("lower", "down_colours", "boots", "shoes_light"),
    ("hat", "backpack", "bag", "handbag"),
)


@functools.lru_cache(maxsize=8)
def msmt_identities(num_train: int, num_test: int, seed: int) -> dict[str, tuple[Identity, ...]]:
    """SynthMSMT's people: attack-side rows recombined, never an attack-side individual.

    Body, upper clothes, lower clothes and carried items each come from a different attack-side
    row, with traits of their own. Train and test are numbered from 0 each, as in MSMT17_V2
    (they are different people).
    """
    pool = _attack_side(seed)
    taken = {p.key() for p in pool}
    out: dict[str, tuple[Identity, ...]] = {}
    for split, count in (("train", num_train), ("test", num_test)):
        people = []
        for ident in range(count):  # person `ident` depends only on (seed, split, ident)
            for attempt in itertools.count():
                rng = identity_rng(seed, f"synth_msmt/{split}", ident * 1000 + attempt)
                sources = rng.choice(len(pool), size=len(_GROUPS), replace=False)
                fields = {}
                for group, src in zip(_GROUPS, sources, strict=True):
                    fields.update({f: getattr(pool[src].appearance, f) for f in group})
                app = Appearance(**fields)
                person = Identity(
                    ident, canonical_values(app).astype(np.int64), app, sample_traits(app, rng)
                )
                if person.key() not in taken:  # else an attack-side individual: draw again
                    break
            taken.add(person.key())
            people.append(person)
        out[split] = tuple(people)
    return out
