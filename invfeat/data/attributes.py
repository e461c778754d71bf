"""Identity-level attribute tables of Market-1501_Attribute and DukeMTMC-attribute.

The .mat annotations ship with the package (`invfeat/data/attributes/`). Their values 1/2 (age
1..4) become class indices from 0 meaning `Attribute.labels[k]`, as the READMEs say; 0 (not
annotated) becomes -1.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.io

DATASETS = ("market1501", "dukemtmc_reid")
TABLE_SPLITS = ("train", "test")  # the tables' own splits, not the re-ID splits
COLOUR_GROUPS = ("up", "down")
UNKNOWN = -1

_NO_YES = ("no", "yes")


@dataclasses.dataclass(frozen=True)
class Attribute:
    """A categorical attribute: class index k means `labels[k]`."""

    name: str
    labels: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _colour_flags(group: str, colours: Sequence[str]) -> tuple[Attribute, ...]:
    return tuple(Attribute(f"{group}{c}", _NO_YES) for c in colours)


# Canonical attribute order per dataset (the READMEs' order), independent of the .mat field order.
_MARKET_UP = ("black", "white", "red", "purple", "yellow", "gray", "blue", "green")
_MARKET_DOWN = ("black", "white", "pink", "purple", "yellow", "gray", "blue", "green", "brown")
_DUKE_UP = ("black", "white", "red", "purple", "gray", "blue", "green", "brown")
_DUKE_DOWN = ("black", "white", "red", "gray", "blue", "green", "brown")

_SCHEMAS: dict[str, tuple[Attribute, ...]] = {
    "market1501": (
        Attribute("gender", ("male", "female")),
        Attribute("hair", ("short hair", "long hair")),
        Attribute("up", ("long sleeve", "short sleeve")),
        Attribute("down", ("long lower body clothing", "short lower body clothing")),
        Attribute("clothes", ("dress", "pants")),
        Attribute("hat", _NO_YES),
        Attribute("backpack", _NO_YES),
        Attribute("bag", _NO_YES),
        Attribute("handbag", _NO_YES),
        Attribute("age", ("young", "teenager", "adult", "old")),
        *_colour_flags("up", _MARKET_UP),
        *_colour_flags("down", _MARKET_DOWN),
    ),
    "dukemtmc_reid": (
        Attribute("gender", ("male", "female")),
        Attribute("top", ("short upper body clothing", "long upper body clothing")),
        Attribute("boots", _NO_YES),
        Attribute("hat", _NO_YES),
        Attribute("backpack", _NO_YES),
        Attribute("bag", _NO_YES),
        Attribute("handbag", _NO_YES),
        Attribute("shoes", ("dark", "light")),
        *_colour_flags("up", _DUKE_UP),
        *_colour_flags("down", _DUKE_DOWN),
    ),
}
_COLOURS = {
    "market1501": {"up": _MARKET_UP, "down": _MARKET_DOWN},
    "dukemtmc_reid": {"up": _DUKE_UP, "down": _DUKE_DOWN},
}
_MAT_FILES = {"market1501": "market_attribute.mat", "dukemtmc_reid": "duke_attribute.mat"}
_MAT_KEYS = {"market1501": "market_attribute", "dukemtmc_reid": "duke_attribute"}


@dataclasses.dataclass(frozen=True, eq=False)
class AttributeTable:
    """Attributes of one split: row i describes person `identities[i]`."""

    dataset: str
    split: str
    identities: np.ndarray  # [N] int64, the dataset's person ids
    values: np.ndarray  # [N, A] int64, class index from 0
    attributes: tuple[Attribute, ...]
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> count
    dropped_identities: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros([0], np.int64)
    )

    def __len__(self) -> int:
        return len(self.identities)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    def attribute(self, name: str) -> Attribute:
        return self.attributes[self._column_index(name)]

    def column(self, name: str) -> np.ndarray:
        """Values [N] of one attribute, aligned with `identities`."""
        return self.values[:, self._column_index(name)]

    def row(self, identity: int) -> dict[str, int]:
        """Attribute name -> class index for one person; KeyError if not annotated."""
        rows = np.flatnonzero(self.identities == identity)
        if len(rows) == 0:
            raise KeyError(f"identity {identity} has no attributes in {self.dataset}/{self.split}")
        return {n: int(v) for n, v in zip(self.names, self.values[rows[0]], strict=True)}

    def lookup(self, identities: Sequence[int] | np.ndarray) -> np.ndarray:
        """Values [M, A] for the given person ids; rows of -1 for ids without attributes."""
        identities = np.asarray(identities, np.int64).reshape(-1)
        order = np.argsort(self.identities)
        sorted_ids = self.identities[order]
        pos = np.clip(np.searchsorted(sorted_ids, identities), 0, max(len(sorted_ids) - 1, 0))
        found = (
            sorted_ids[pos] == identities if len(sorted_ids) else np.zeros(len(identities), bool)
        )
        out = np.full([len(identities), len(self.attributes)], UNKNOWN, np.int64)
        out[found] = self.values[order[pos[found]]]
        return out

    def _column_index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(
                f"no attribute {name!r} in {self.dataset}/{self.split}; have {self.names}"
            ) from None


def attribute_schema(dataset: str, *, merge_colours: bool = False) -> tuple[Attribute, ...]:
    """The attributes (in table column order) of `dataset`, raw or with merged colours."""
    _check_dataset(dataset)
    raw = _SCHEMAS[dataset]
    if not merge_colours:
        return raw
    return merge_colour_values(np.zeros([0, len(raw)], np.int64), raw)[1]


def packaged_mat_path(dataset: str) -> pathlib.Path:
    """Path of the .mat annotation file shipped inside the package."""
    _check_dataset(dataset)
    resource = importlib.resources.files("invfeat.data") / "attributes" / _MAT_FILES[dataset]
    return pathlib.Path(str(resource))


def load_attribute_table(
    dataset: str,
    split: str,
    *,
    mat_path: str | pathlib.Path | None = None,
    merge_colours: bool = False,
) -> AttributeTable:
    """Reads one split of an attribute .mat file (the packaged copy unless `mat_path`).

    `merge_colours=True` applies the paper's post-processing: the colour flags (`upblack`,
    `upwhite`, ...) become one class attribute `up_colour` / `down_colour`, and identities
    without exactly one flag in a group are dropped (counted in `AttributeTable.dropped`).
    """
    _check_dataset(dataset)
    if split not in TABLE_SPLITS:
        raise ValueError(f"split must be one of {TABLE_SPLITS}, got {split!r}")
    path = pathlib.Path(mat_path) if mat_path is not None else packaged_mat_path(dataset)
    identities, values = _read_mat(path, dataset, split)
    attributes = _SCHEMAS[dataset]
    if not merge_colours:
        return AttributeTable(dataset, split, identities, values, attributes)
    merged, merged_attributes = merge_colour_values(values, attributes)
    colour_columns = [i for i, a in enumerate(merged_attributes) if a.name.endswith("_colour")]
    keep = np.all(merged[:, colour_columns] != UNKNOWN, axis=1)
    dropped = {}
    for group in COLOUR_GROUPS:
        flags = np.stack(
            [values[:, i] for i, a in enumerate(attributes) if _colour_group(a.name) == group], 1
        )
        on = np.sum(flags == 1, axis=1)
        dropped[f"{group}_colour_none"] = int(np.sum(on == 0))
        dropped[f"{group}_colour_several"] = int(np.sum(on > 1))
    return AttributeTable(
        dataset,
        split,
        identities[keep],
        merged[keep],
        merged_attributes,
        dropped=dropped,
        dropped_identities=identities[~keep],
    )


def merge_colour_values(
    values_NA: np.ndarray, attributes: Sequence[Attribute]
) -> tuple[np.ndarray, tuple[Attribute, ...]]:
    """Replaces the up*/down* colour flags by `up_colour` / `down_colour` class columns.

    A merged value is the index of the single flag set to 1 in its group, or -1 when none or
    several are set (or the flags are unknown). Other columns keep their order, first.
    """
    values_NA = np.asarray(values_NA)
    keep_cols = [i for i, a in enumerate(attributes) if _colour_group(a.name) is None]
    out_cols = [values_NA[:, keep_cols]]
    out_attrs = [attributes[i] for i in keep_cols]
    for group in COLOUR_GROUPS:
        cols = [i for i, a in enumerate(attributes) if _colour_group(a.name) == group]
        if not cols:
            continue
        flags = values_NA[:, cols] == 1
        merged = np.where(flags.sum(1) == 1, np.argmax(flags, axis=1), UNKNOWN)
        out_cols.append(merged[:, None].astype(values_NA.dtype))
        colours = tuple(attributes[i].name[len(group) :] for i in cols)
        out_attrs.append(Attribute(f"{group}_colour", colours))
    return np.concatenate(out_cols, axis=1), tuple(out_attrs)


def _colour_group(name: str) -> str | None:
    for group in COLOUR_GROUPS:
        if name.startswith(group) and len(name) > len(group) and name[len(group) :].isalpha():
            return group
    return None


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"attribute tables exist for {DATASETS}, got {dataset!r}")


def _read_mat(path: pathlib.Path, dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Identities [N] and 0-based values [N, A] (canonical column order) of one split.

    Fields are read by name: their order differs between the train and test structs.
    """
    if not path.is_file():
        raise FileNotFoundError(f"attribute file not found: {path}")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises several types for corrupt files
        raise ValueError(f"cannot read attribute file {path}: {e}") from e
    key = _MAT_KEYS[dataset]
    if key not in mat:
        raise ValueError(f"{path}: no struct {key!r} (is this the {dataset} attribute file?)")
    top = mat[key]
    if split not in (top.dtype.names or ()):
        raise ValueError(f"{path}: struct {key!r} has no {split!r} field")
    struct = top[split][0, 0]
    names = set(struct.dtype.names or ())
    schema = _SCHEMAS[dataset]
    missing = [a.name for a in schema if a.name not in names] + (
        [] if "image_index" in names else ["image_index"]
    )
    if missing:
        raise ValueError(f"{path}: {split} lacks fields {missing}")
    identities = np.array([int(_scalar(x)) for x in struct["image_index"][0, 0].ravel()], np.int64)
    columns = []
    for attribute in schema:
        raw = np.asarray(struct[attribute.name][0, 0], np.int64).ravel()
        if raw.shape != identities.shape:
            raise ValueError(
                f"{path}: {split}.{attribute.name} has {raw.size} values, expected {identities.size}"
            )
        bad = (raw < 0) | (raw > attribute.num_classes)
        if bad.any():
            raise ValueError(
                f"{path}: {split}.{attribute.name} has values outside 0..{attribute.num_classes}"
            )
        columns.append(raw - 1)  # 0 (not annotated: two rows of Duke train `top`) -> -1
    return identities, np.stack(columns, axis=1)


def _scalar(x: Any) -> Any:
    while isinstance(x, np.ndarray):
        x = x.ravel()[0]
    return x
