"""Parsers for the on-disk layouts of Market-1501, DukeMTMC-reID and MSMT17_V2.

A parser turns the folder a user unpacked into per-split lists of `ImageEntry` (path, identity,
camera), without reading any pixels. Nothing is skipped silently:

- a folder whose image count differs from the published one gives a `LayoutWarning` naming the
  folder and both counts (a partial copy still builds);
- files that do not follow the dataset's naming scheme (or MSMT17 list lines that are malformed
  or point at missing files) are collected in `Layout.rejected` with the reason, and a
  `LayoutWarning` lists them;
- Market-1501 junk images (identity -1) are dropped and counted in `Layout.junk`; distractors
  (identity 0) are kept with `ImageEntry.distractor = True`.

Facts used (from the datasets' papers and their standard protocol):
Market-1501-v15.09.15: `bounding_box_train` 12936, `bounding_box_test` 19732, `query` 3368 images,
names `PPPP_cCsS_FFFFFF_NN.jpg` (cameras 1-6). DukeMTMC-reID: 16522 / 17661 / 2228 images,
names `PPPP_cC_fFFFFFFF.jpg` (cameras 1-8). MSMT17_V2: `list_train.txt` 30248, `list_val.txt`
2373 (both under `mask_train_v2/`), `list_query.txt` 11659, `list_gallery.txt` 82161 (under
`mask_test_v2/`); each line is `PPPP/PPPP_NNN_CC_....jpg PID`, camera CC (1-15) is the third
`_` field. MSMT17 test identities are numbered from 0 again: they are other people than the train
identities with the same numbers.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import warnings
from collections.abc import Callable

# OS clutter found in some copies (e.g. Thumbs.db in Market-1501); ignored without a warning.
_OS_FILES = frozenset({"Thumbs.db", ".DS_Store", "desktop.ini"})
_MAX_LISTED = 20


class LayoutWarning(UserWarning):
    """A dataset folder differs from the published layout (counts, names)."""


@dataclasses.dataclass(frozen=True)
class ImageEntry:
    """One image on disk."""

    path: pathlib.Path  # absolute
    file_name: str  # relative to the dataset root, "/"-separated
    identity: int
    camera: int
    distractor: bool = False


@dataclasses.dataclass
class Layout:
    """A parsed dataset folder: split -> images, plus what was left out and why."""

    dataset: str
    root: pathlib.Path
    splits: dict[str, list[ImageEntry]]
    rejected: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (file, reason)
    junk: int = 0  # Market-1501 identity -1 images dropped

    def num_identities(self, split: str) -> int:
        return len({e.identity for e in self.splits[split]})


@dataclasses.dataclass(frozen=True)
class _FolderSpec:
    folder: str
    split: str
    expected: int


_MARKET_FOLDERS = (
    _FolderSpec("bounding_box_train", "train", 12936),
    _FolderSpec("query", "query", 3368),
    _FolderSpec("bounding_box_test", "gallery", 19732),
)
_DUKE_FOLDERS = (
    _FolderSpec("bounding_box_train", "train", 16522),
    _FolderSpec("query", "query", 2228),
    _FolderSpec("bounding_box_test", "gallery", 17661),
)
_MSMT_LISTS = (
    _FolderSpec("list_train.txt", "train", 30248),
    _FolderSpec("list_val.txt", "val", 2373),
    _FolderSpec("list_query.txt", "query", 11659),
    _FolderSpec("list_gallery.txt", "gallery", 82161),
)
_MSMT_IMAGE_DIRS = {"train": "mask_train_v2", "val": "mask_train_v2"}  # query/gallery: test

_MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
_DUKE_NAME = re.compile(r"^(\d{4})_c(\d)_f(\d{7})\.jpg$")
_MSMT_NAME = re.compile(r"^(\d{4})_(\d+)_(\d{2})_[^/]*\.jpg$")

ROOT_NAMES = {
    "market1501": ("Market-1501-v15.09.15", "Market-1501", "market1501"),
    "dukemtmc_reid": ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmc_reid"),
    "msmt17": ("MSMT17_V2", "MSMT17", "msmt17"),
}
_ROOT_MARKERS = {
    "market1501": "bounding_box_train",
    "dukemtmc_reid": "bounding_box_train",
    "msmt17": "list_train.txt",
}


def find_root(manual_dir: str | pathlib.Path, dataset: str) -> pathlib.Path:
    """The dataset folder: `manual_dir` itself or its subfolder with the dataset's usual name."""
    manual_dir = pathlib.Path(manual_dir)
    marker = _ROOT_MARKERS[dataset]
    candidates = [manual_dir] + [manual_dir / name for name in ROOT_NAMES[dataset]]
    for candidate in candidates:
        if (candidate / marker).exists():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"no {dataset} folder (one holding {marker!r}) found; tried {tried}")


def parse_market1501(root: str | pathlib.Path) -> Layout:
    """Market-1501-v15.09.15: bounding_box_train / query / bounding_box_test."""
    return _parse_folders("market1501", pathlib.Path(root), _MARKET_FOLDERS, _market_entry)


def parse_dukemtmc_reid(root: str | pathlib.Path) -> Layout:
    """DukeMTMC-reID: bounding_box_train / query / bounding_box_test."""
    return _parse_folders("dukemtmc_reid", pathlib.Path(root), _DUKE_FOLDERS, _duke_entry)


def parse_msmt17(root: str | pathlib.Path) -> Layout:
    """MSMT17_V2: list_{train,val,query,gallery}.txt over mask_train_v2 / mask_test_v2."""
    root = pathlib.Path(root)
    layout = Layout("msmt17", root, {})
    for spec in _MSMT_LISTS:
        list_path = root / spec.folder
        if not list_path.is_file():
            warnings.warn(
                f"{list_path}: missing; split {spec.split!r} left out", LayoutWarning, stacklevel=3
            )
            continue
        image_dir = _msmt_image_dir(root, _MSMT_IMAGE_DIRS.get(spec.split, "mask_test_v2"))
        entries = []
        num_lines = 0
        for line_no, line in enumerate(list_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            num_lines += 1
            where = f"{spec.folder}:{line_no}"
            parts = line.split()
            match = _MSMT_NAME.match(parts[0].rsplit("/", 1)[-1]) if len(parts) == 2 else None
            if match is None or not parts[1].lstrip("-").isdigit():
                layout.rejected.append((where, f"malformed line {line.strip()!r}"))
                continue
            path = image_dir / parts[0]
            file_name = f"{image_dir.name}/{parts[0]}"
            if not path.is_file():
                layout.rejected.append((file_name, f"listed in {where} but missing"))
                continue
            entries.append(ImageEntry(path, file_name, int(parts[1]), int(match.group(3))))
        _check_count(list_path, num_lines, spec.expected)
        if entries:
            layout.splits[spec.split] = entries
    _warn_rejected(layout)
    return layout


PARSERS: dict[str, Callable[[pathlib.Path], Layout]] = {
    "market1501": parse_market1501,
    "dukemtmc_reid": parse_dukemtmc_reid,
    "msmt17": parse_msmt17,
}


def parse(dataset: str, manual_dir: str | pathlib.Path) -> Layout:
    """Finds the dataset under `manual_dir` and parses it."""
    if dataset not in PARSERS:
        raise ValueError(f"no on-disk parser for {dataset!r}; known: {sorted(PARSERS)}")
    return PARSERS[dataset](find_root(manual_dir, dataset))


def _msmt_image_dir(root: pathlib.Path, name: str) -> pathlib.Path:
    for candidate in (name, name.replace("_v2", "_V2")):
        if (root / candidate).is_dir():
            return root / candidate
    return root / name


def _market_entry(path: pathlib.Path, file_name: str) -> ImageEntry | None:
    match = _MARKET_NAME.match(path.name)
    if match is None:
        return None
    identity = int(match.group(1))
    return ImageEntry(path, file_name, identity, int(match.group(2)), distractor=identity == 0)


def _duke_entry(path: pathlib.Path, file_name: str) -> ImageEntry | None:
    match = _DUKE_NAME.match(path.name)
    if match is None:
        return None
    return ImageEntry(path, file_name, int(match.group(1)), int(match.group(2)))


def _parse_folders(
    dataset: str,
    root: pathlib.Path,
    specs: tuple[_FolderSpec, ...],
    entry_fn: Callable[[pathlib.Path, str], ImageEntry | None],
) -> Layout:
    layout = Layout(dataset, root, {})
    for spec in specs:
        folder = root / spec.folder
        if not folder.is_dir():
            warnings.warn(
                f"{folder}: missing; split {spec.split!r} left out", LayoutWarning, stacklevel=3
            )
            continue
        files = sorted(p for p in folder.iterdir() if p.name not in _OS_FILES)
        entries = []
        num_images = 0
        for path in files:
            file_name = f"{spec.folder}/{path.name}"
            entry = entry_fn(path, file_name) if path.is_file() else None
            if entry is None:
                layout.rejected.append((file_name, "name does not follow the dataset's scheme"))
                continue
            num_images += 1
            if entry.identity == -1:
                layout.junk += 1
            else:
                entries.append(entry)
        _check_count(folder, num_images, spec.expected)
        if entries:
            layout.splits[spec.split] = entries
    _warn_rejected(layout)
    return layout


def _check_count(where: pathlib.Path, found: int, expected: int) -> None:
    if found != expected:
        warnings.warn(
            f"{where}: found {found} images, expected {expected} (partial copy?)",
            LayoutWarning,
            stacklevel=3,
        )


def _warn_rejected(layout: Layout) -> None:
    if not layout.rejected:
        return
    listed = "; ".join(f"{name} ({why})" for name, why in layout.rejected[:_MAX_LISTED])
    more = len(layout.rejected) - _MAX_LISTED
    warnings.warn(
        f"{layout.root}: {len(layout.rejected)} files left out: {listed}"
        + (f"; and {more} more" if more > 0 else ""),
        LayoutWarning,
        stacklevel=3,
    )
