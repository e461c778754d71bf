"""Parsers for the on-disk layouts of Market-1501, DukeMTMC-reID and MSMT17 (V1 and V2).

A parser turns an unpacked dataset folder into per-split lists of `ImageEntry` without reading
any pixels, and skips nothing silently: image counts other than the published ones, misnamed
files and missing splits are warned about (`LayoutWarning`) and recorded in the `Layout`.
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
    junk: int = 0  # Market-1501 identity -1 images dropped (as FastReID does)
    missing: dict[str, str] = dataclasses.field(default_factory=dict)  # split -> why it is absent

    def num_identities(self, split: str) -> int:
        return len({e.identity for e in self.splits[split]})


@dataclasses.dataclass(frozen=True)
class _FolderSpec:
    folder: str
    split: str
    expected: int


# Published image counts per folder or list (MSMT17: V2's, which V1 shares).
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
# (train/val images, query/gallery images): MSMT17_V2, then MSMT17_V1.
_MSMT_IMAGE_DIRS = (("mask_train_v2", "mask_test_v2"), ("train", "test"))

# Market-1501 `PPPP_cCsS_FFFFFF_NN.jpg` (cameras 1-6, identity -1 junk, 0 distractor),
# DukeMTMC-reID `PPPP_cC_fFFFFFFF.jpg` (cameras 1-8), MSMT17 `PPPP_NNN_CC_....jpg` (cameras 1-15).
_MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
_DUKE_NAME = re.compile(r"^(\d{4})_c(\d)_f(\d{7})\.jpg$")
_MSMT_NAME = re.compile(r"^(\d{4})_(\d+)_(\d{2})_[^/]*\.jpg$")

ROOT_NAMES = {
    "market1501": ("Market-1501-v15.09.15", "Market-1501", "market1501"),
    "dukemtmc_reid": ("DukeMTMC-reID", "dukemtmc-reid", "dukemtmc_reid"),
    "msmt17": ("MSMT17_V2", "MSMT17_V1", "MSMT17", "msmt17"),
}
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".rar", ".7z")
_ROOT_MARKERS = {
    "market1501": "bounding_box_train",
    "dukemtmc_reid": "bounding_box_train",
    "msmt17": "list_train.txt",
}


def find_root(manual_dir: str | pathlib.Path, dataset: str) -> pathlib.Path:
    """The dataset folder: `manual_dir`, or its subfolder (or sub-subfolder) with a usual name."""
    manual_dir = pathlib.Path(manual_dir)
    marker = _ROOT_MARKERS[dataset]
    names = ROOT_NAMES[dataset]
    candidates = [manual_dir] + [manual_dir / name for name in names]
    candidates += [manual_dir / name / name for name in names]  # unpacked into a folder of its name
    for candidate in candidates:
        if (candidate / marker).exists():
            return candidate
    hint = _root_hint(manual_dir, dataset, marker)
    tried = ", ".join(str(c) for c in candidates[: 1 + len(names)])
    raise FileNotFoundError(
        f"no {dataset} folder (one holding {marker!r}) found; tried {tried}" + hint
    )


def _root_hint(manual_dir: pathlib.Path, dataset: str, marker: str) -> str:
    """Why `find_root` found nothing, when it can tell: an archive not unpacked, a subfolder."""
    if manual_dir.is_file():
        return f"; {manual_dir} is a file, not a folder" + (
            ": unpack it and pass the folder it unpacks to"
            if manual_dir.name.lower().endswith(_ARCHIVE_SUFFIXES)
            else ""
        )
    prefixes = tuple(name.lower() for name in ROOT_NAMES[dataset])
    archives = sorted(
        p.name
        for p in (manual_dir.iterdir() if manual_dir.is_dir() else ())
        if p.is_file()
        and p.name.lower().startswith(prefixes)
        and p.name.lower().endswith(_ARCHIVE_SUFFIXES)
    )
    if archives:
        return f"; {manual_dir} holds {', '.join(archives)}: unpack it there first"
    if (manual_dir.parent / marker).exists():
        return f"; {manual_dir} looks like one of its subfolders: pass {manual_dir.parent}"
    return ""


def parse_market1501(root: str | pathlib.Path) -> Layout:
    """Market-1501-v15.09.15: bounding_box_train / query / bounding_box_test."""
    return _parse_folders("market1501", pathlib.Path(root), _MARKET_FOLDERS, _market_entry)


def parse_dukemtmc_reid(root: str | pathlib.Path) -> Layout:
    """DukeMTMC-reID: bounding_box_train / query / bounding_box_test."""
    return _parse_folders("dukemtmc_reid", pathlib.Path(root), _DUKE_FOLDERS, _duke_entry)


def parse_msmt17(root: str | pathlib.Path) -> Layout:
    """MSMT17: list_{train,val,query,gallery}.txt over mask_{train,test}_v2 (V2) or train/test.

    Lines read `PPPP/name.jpg PID`. Test identities are numbered from 0 again: they are other
    people than the train identities with the same numbers.
    """
    root = pathlib.Path(root)
    layout = Layout("msmt17", root, {})
    train_dir, test_dir = _msmt_image_dirs(root)
    for spec in _MSMT_LISTS:
        list_path = root / spec.folder
        if not list_path.is_file():
            _leave_out(layout, spec, f"{list_path} is missing")
            continue
        image_dir = train_dir if spec.split in ("train", "val") else test_dir
        entries = []
        num_lines = 0
        text = list_path.read_text(encoding="utf-8", errors="replace")
        for line_no, line in enumerate(text.splitlines(), 1):
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
        else:
            _leave_out(layout, spec, f"no image listed in {list_path} was found under {image_dir}")
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


def _msmt_image_dirs(root: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """(train/val image folder, query/gallery image folder) of an MSMT17_V2 or MSMT17_V1 root."""
    for pair in _MSMT_IMAGE_DIRS:
        for train, test in (pair, tuple(name.replace("_v2", "_V2") for name in pair)):
            if (root / train).is_dir() or (root / test).is_dir():
                return root / train, root / test
    expected = " or ".join(f"{train}/ and {test}/" for train, test in _MSMT_IMAGE_DIRS)
    warnings.warn(f"{root}: no MSMT17 image folder ({expected})", LayoutWarning, stacklevel=3)
    return root / _MSMT_IMAGE_DIRS[0][0], root / _MSMT_IMAGE_DIRS[0][1]


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
            _leave_out(layout, spec, f"{folder} is missing")
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
        else:
            _leave_out(layout, spec, f"{folder} holds no image named as {dataset}'s are")
    _warn_rejected(layout)
    return layout


def _leave_out(layout: Layout, spec: _FolderSpec, why: str) -> None:
    layout.missing[spec.split] = why
    warnings.warn(f"{why}; split {spec.split!r} left out", LayoutWarning, stacklevel=4)


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
