"""Features of a dataset's splits through a victim's API, written as FastReID-layout files.

`embed_split` streams one built split through an embedding function in fixed-size batches;
`extract_features` writes one `.npz` per split (plaintext, or ShuffleBits ciphertext under a
static key, or under one-time keys with the per-row nonces beside the features, or stream-mode
ciphertext with its nonces and Poly1305 tags). Rows follow the dataset's record order; paths are
the records' dataset-relative file names.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from tqdm import tqdm

from invfeat import shufflebits
from invfeat.api import FeatureAPI
from invfeat.data.datasets import dataset_splits, open_dataset_split, prepare_dataset
from invfeat.data.feature_files import FeatureFile, write_features
from invfeat.data.pipeline import LoaderConfig, make_loader
from invfeat.files import json_default, remove_orphans, write_json
from invfeat.shufflebits.aead import stream_tags

MANIFEST_VERSION = 1
# images float32 [B, H, W, 3] in [0, 1] -> (features [B, D], nonces [B, 3] or None)
EmbedFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


class HasAPI(Protocol):
    """What extraction needs of a victim (`TrainedVictim` is one)."""

    @property
    def image_size(self) -> tuple[int, int]: ...

    def api(self, key: Any = None, batch_size: int = 256) -> FeatureAPI: ...


class Embedded(NamedTuple):
    """A split's features in record order, with what identifies each row."""

    features: np.ndarray  # [N, D]
    nonces: np.ndarray | None  # [N, 3] uint32 (one-time and stream encryption only)
    identity: np.ndarray  # [N] int32
    camera: np.ndarray  # [N] int32
    file_names: np.ndarray  # [N] str


def embed_split(
    embed: EmbedFn,
    source: Sequence[Mapping[str, Any]],
    image_size: tuple[int, int],
    batch_size: int,
    *,
    desc: str | None = None,
) -> Embedded:
    """`embed` over every record of `source` in order, in batches of exactly `batch_size`
    (the last one padded and trimmed), so a jitted `embed` compiles once."""
    config = LoaderConfig(
        batch_size=batch_size, image_size=tuple(image_size), shuffle=False, num_epochs=1,
        drop_remainder=False, include_file_names=True,
    )  # fmt: skip
    loader = make_loader(source, config, process_index=0, process_count=1)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in Embedded._fields}
    for batch in tqdm(
        loader,
        total=-(-len(source) // batch_size),
        desc=desc,
        unit="batch",
        file=sys.stderr,
        disable=desc is None,
        leave=False,
    ):
        valid = batch["valid"]
        features, nonces = embed(batch["image"])
        parts["features"].append(np.asarray(features)[valid])
        if nonces is not None:
            parts["nonces"].append(np.asarray(nonces)[valid])
        parts["identity"].append(batch["identity"][valid])
        parts["camera"].append(batch["camera"][valid])
        parts["file_names"].append(np.char.decode(batch["file_name"][valid].astype(bytes)))
    out = {k: np.concatenate(v) if v else None for k, v in parts.items()}
    return Embedded(**out)


def api_embed(api: FeatureAPI) -> EmbedFn:
    """The API as an `EmbedFn` (its served features and one-time or stream nonces)."""

    def embed(images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        served = api.serve(images)
        return served.features, served.nonces

    return embed


def scheme_of(key: Any) -> str | None:
    """The feature-file encryption scheme of an API key (None: plaintext)."""
    if key is None:
        return None
    if isinstance(key, shufflebits.StreamKey):
        return "stream"
    if isinstance(key, shufflebits.Secret):
        return "one-time"
    if isinstance(key, shufflebits.Key):
        return "static"
    raise TypeError(f"key must be a shufflebits Key, Secret or StreamKey, got {type(key).__name__}")


class OutputsExistError(FileExistsError):
    """Output files exist that this extraction may not replace: `paths`."""

    def __init__(self, paths: Sequence[Path]):
        super().__init__(
            f"{', '.join(map(str, paths))}: already exist(s), from a finished extraction or one "
            "with other settings; pass overwrite=True to replace them"
        )
        self.paths = tuple(paths)


def manifest_path(out: str | Path) -> Path:
    """The record of an extraction under way: `DIR/.extract.json`, `.NAME.extract.json`."""
    out = Path(out)
    if out.suffix == ".npz":
        return out.with_name(f".{out.stem}.extract.json")
    return out / ".extract.json"


def feature_paths(out: str | Path, splits: Sequence[str]) -> dict[str, Path]:
    """Where each split's file goes: `DIR/<split>.npz`, or `NAME_<split>.npz` for `NAME.npz`."""
    out = Path(out)
    if out.suffix == ".npz":
        return {s: out.with_name(f"{out.stem}_{s}.npz") for s in splits}
    return {s: out / f"{s}.npz" for s in splits}


def extract_features(
    victim: HasAPI,
    dataset: str,
    out: str | Path,
    *,
    key: shufflebits.Key | shufflebits.Secret | shufflebits.StreamKey | None = None,
    splits: Sequence[str] | None = None,
    data_dir: str | Path | None = None,
    data_settings: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    overwrite: bool = False,
    made_by: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write one feature file per split of `dataset` (default: every built split).

    Returns {split: path}. With a key the files hold ciphertext (and, one-time and stream, the
    nonces; stream, the Poly1305 tags computed from the served ciphertext). Each file is
    published atomically as its split is done.

    Resumable: while it runs, `manifest_path(out)` records what makes the files (dataset, data
    settings, splits, scheme, and `made_by`: the caller's JSON-able description of the victim
    and key); a run that finds its own record there (one that was killed) keeps the files
    already written and makes the rest; the record is removed at the end. Other existing files
    are replaced only with `overwrite` (OutputsExistError before any work, else), and a file
    that another writer makes meanwhile is never replaced without it. The output folder is
    written to (the record) before any work, so an unwritable `out` fails first.
    """
    scheme = scheme_of(key)
    opened = dict(data_dir=data_dir, data_settings=data_settings)
    prepare_dataset(dataset, **opened)
    splits = tuple(splits) if splits else dataset_splits(dataset, **opened)
    paths = feature_paths(out, splits)
    manifest = manifest_path(out)
    record = json.loads(
        json.dumps(
            {
                "version": MANIFEST_VERSION,
                "dataset": dataset,
                "data_settings": data_settings,
                "splits": list(splits),
                "scheme": scheme,
                "made_by": made_by,
            },
            default=json_default,
        )
    )
    for path in paths.values():
        remove_orphans(path)
    existing = [path for path in paths.values() if path.exists()]
    resuming = made_by is not None and _read_manifest(manifest) == record
    if existing and not (overwrite or resuming):
        raise OutputsExistError(existing)
    write_json(record, manifest)
    api = victim.api(key=key, batch_size=batch_size)
    for split, path in paths.items():
        if resuming and not overwrite and path.exists():
            if progress:
                print(f"{path}: kept from the interrupted extraction", file=sys.stderr)
            continue
        source = open_dataset_split(dataset, split, **opened)
        emb = embed_split(
            api_embed(api),
            source,
            victim.image_size,
            api.batch_size,
            desc=f"{dataset}/{split}" if progress else None,
        )
        tags = stream_tags(emb.features, key, emb.nonces) if scheme == "stream" else None
        ff = FeatureFile(emb.file_names, emb.features, scheme, emb.nonces, tags=tags)
        write_features(path, ff, exclusive=not overwrite)
    manifest.unlink()
    return paths


def _read_manifest(path: Path) -> Any:
    """The record at `path`, or None where there is none or it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
