"""Evaluation of reconstructions: back through the API, against the real images and gallery;
and the published `evaluation.py` on feature files made elsewhere.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from invfeat import metrics as M
from invfeat.api import as_float_images
from invfeat.attacks.attributes import AttributePredictor, AttributeResult, attribute_metrics
from invfeat.data.feature_files import (
    FeatureFile,
    FeatureFileError,
    normalise_path,
    read_features,
)

SSIM_WINDOW = 11


class ReconstructionEvaluation(NamedTuple):
    """JSON-able metrics, and the first `grid_images` reconstructions ([n, H, W, 3] in [0, 1])."""

    metrics: dict[str, Any]
    reconstructions: np.ndarray


def cosine_distances(x_ND: np.ndarray, y_ND: np.ndarray) -> np.ndarray:
    """1 - cosine similarity per row, in float64 on the host."""
    x = np.asarray(x_ND, np.float64)
    y = np.asarray(y_ND, np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(
            f"cosine distance needs two [N, D] arrays of one shape: {x.shape}, {y.shape}"
        )
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    return 1.0 - np.sum(x * y, axis=1) / np.maximum(norms, 1e-12)


def image_similarity(images: np.ndarray, reconstructions: np.ndarray, block: int = 256) -> dict:
    """Mean PSNR (dB, 100 for identical images) and SSIM over images, computed in blocks."""
    psnr, ssim = [], []
    window = min(SSIM_WINDOW, *images.shape[1:3])
    window -= 1 - window % 2  # odd
    for start in range(0, len(images), block):
        x, y = images[start : start + block], reconstructions[start : start + block]
        psnr.append(np.asarray(M.psnr(x, y)))
        ssim.append(np.asarray(M.ssim(x, y, window_size=window)))
    return {
        "psnr": float(np.mean(np.concatenate(psnr))),
        "ssim": float(np.mean(np.concatenate(ssim))),
    }


def _attribute_block(
    attribute_predict: AttributeResult | AttributePredictor | Callable[[np.ndarray], np.ndarray],
    features: np.ndarray,
    query_attributes: np.ndarray,
) -> dict[str, Any]:
    """Per-attribute and mean balanced accuracy of the head on the reconstructions' features."""
    if isinstance(attribute_predict, AttributeResult):
        attribute_predict = attribute_predict.predict
    if isinstance(attribute_predict, AttributePredictor):
        labels = attribute_predict.prepare_labels(query_attributes)
        predictions = attribute_predict(features)
        names, classes = attribute_predict.names, attribute_predict.num_classes
    else:
        labels = np.asarray(query_attributes)
        predictions = np.asarray(attribute_predict(features))
        if predictions.shape != labels.shape:
            raise ValueError(
                f"attribute_predict gave {predictions.shape} for query_attributes {labels.shape}"
            )
        names = tuple(f"attribute_{a}" for a in range(labels.shape[1]))
        top = max(int(labels.max(initial=0)), int(predictions.max(initial=0)))
        classes = (max(top + 1, 2),) * labels.shape[1]
    scores = attribute_metrics(labels, predictions, names, classes)
    return {
        name: value["balanced_accuracy"] for name, value in scores.items() if name != "mean"
    } | {"mean": scores["mean"]["balanced_accuracy"]}


def evaluate_reconstructions(
    reconstruct: Callable[[np.ndarray], np.ndarray],
    query_features_in: np.ndarray,
    *,
    query_images: np.ndarray,
    query_features_plain: np.ndarray,
    query_ids: np.ndarray,
    query_cams: np.ndarray,
    gallery_features_plain: np.ndarray,
    gallery_ids: np.ndarray,
    gallery_cams: np.ndarray,
    plain_features_fn: Callable[[np.ndarray], np.ndarray],
    attribute_predict: AttributeResult
    | AttributePredictor
    | Callable[[np.ndarray], np.ndarray]
    | None = None,
    query_attributes: np.ndarray | None = None,
    gallery_features_in: np.ndarray | None = None,
    gallery_images: np.ndarray | None = None,
    grid_images: int = 8,
    seed: int = 0,
) -> ReconstructionEvaluation:
    """Reconstruct the queries (and, with `gallery_features_in`, the gallery, as published)
    and score the reconstructions.

    The real query (`query_images`, their plaintext features, identities and cameras) and
    gallery (plaintext features, identities, cameras) are what the reconstructions are scored
    against. `plain_features_fn(images [N, H, W, 3] float in [0, 1]) -> plaintext features` is the
    evaluator's API (the legitimate owner's: plaintext, or decrypted). `attribute_predict` is
    a head that reads plaintext features: the plaintext attack's `AttributeResult` or its
    `.predict` (their `prepare_labels` maps the raw `query_attributes` to the head's columns),
    or any features -> class ids function with `query_attributes` already in its columns.
    With the gallery reconstructed too, `plain_features_fn` gets the query's reconstructions
    followed by the gallery's in one call (held as float32 on the host: about 11 GiB for the
    19,281 query and gallery images of Market-1501 at 384x128).
    Returns `(metrics, reconstructions[:grid_images])`; the metrics:

    - `cosine_distance`: mean cosine distance between the reconstructions' features and the
      real features, over every reconstructed image (the paper's measure);
      `cosine_distance_shuffled`, the same against other images' features (a random pairing):
      the level of a reconstruction without identity;
    - `rank1`, `rank5`, `mAP`: re-ID with the query's reconstructions as queries against the
      real gallery (the victim's evaluation protocol): the identity leak in one number;
    - `psnr`, `ssim`: to the real images (means over every reconstructed image);
    - `attributes` (with `attribute_predict`): the head on the query reconstructions' features;
    - `reconstructed`: the number of images reconstructed per split.
    """
    real = as_float_images(query_images, "query_images")
    plain = np.asarray(query_features_plain, np.float32)
    n = len(real)
    for name, array in (
        ("query_features_in", query_features_in),
        ("query_features_plain", plain),
        ("query_ids", query_ids),
        ("query_cams", query_cams),
    ):
        if len(array) != n:
            raise ValueError(f"{name} has {len(array)} rows for {n} query images")
    gallery_plain = np.asarray(gallery_features_plain, np.float32)
    splits = {"query": (query_features_in, real, plain)}
    if (gallery_features_in is None) != (gallery_images is None):
        raise ValueError("reconstructing the gallery needs gallery_features_in and gallery_images")
    if gallery_features_in is not None:
        gallery_real = as_float_images(gallery_images, "gallery_images")
        if not len(gallery_features_in) == len(gallery_real) == len(gallery_plain):
            raise ValueError(
                f"gallery: {len(gallery_features_in)} features in, {len(gallery_real)} images, "
                f"{len(gallery_plain)} plaintext features"
            )
        splits["gallery"] = (gallery_features_in, gallery_real, gallery_plain)
    made = {}
    for split, (features_in, images, _) in splits.items():
        made[split] = np.asarray(reconstruct(features_in), np.float32)
        if made[split].shape != images.shape:
            raise ValueError(
                f"reconstruct gave {made[split].shape}, expected the {split} images' {images.shape}"
            )
    reconstructions = np.concatenate(list(made.values()))
    targets = np.concatenate([p for _, _, p in splits.values()])
    features = np.asarray(plain_features_fn(reconstructions), np.float32)
    if features.shape != targets.shape:
        raise ValueError(f"plain_features_fn gave {features.shape}, expected {targets.shape}")
    total = len(targets)
    shuffled = targets[np.random.default_rng(seed).permutation(total)] if total > 1 else targets
    reid = M.reid_metrics(
        features[:n], query_ids, query_cams, gallery_plain, gallery_ids, gallery_cams
    )
    real_all = np.concatenate([images for _, images, _ in splits.values()])
    result: dict[str, Any] = {
        "cosine_distance": float(np.mean(cosine_distances(features, targets))),
        "cosine_distance_shuffled": float(np.mean(cosine_distances(features, shuffled))),
        "rank1": reid["rank1"],
        "rank5": reid["rank5"],
        "mAP": reid["mAP"],
        "num_queries": reid["num_queries"],
        **image_similarity(real_all, reconstructions),
        "reconstructed": {split: len(images) for split, images in made.items()},
    }
    if attribute_predict is not None:
        if query_attributes is None:
            raise ValueError("attribute_predict needs query_attributes")
        result["attributes"] = _attribute_block(attribute_predict, features[:n], query_attributes)
    return ReconstructionEvaluation(result, made["query"][:grid_images])


def evaluate_feature_files(
    source: str | Path,
    target_dir: str | Path,
    *,
    pattern: str = "*.npz",
    identifier: str | None = None,
    skip_errors: bool = False,
) -> dict[str, float]:
    """Mean cosine distance per target file (its path relative to `target_dir` -> value) to the
    source rows of its paths.

    The published `evaluation.py`: target files hold features of reconstructions, rows matched
    to the source file's by image path. Every target path must be in the source file; both must
    be plaintext feature files of one dimension. Target files are `target_dir/<pattern>`, in
    path order; the published script's search is `pattern="**/*.npz"` (every folder below),
    keeping only the paths that contain `identifier` (published: the source file's name up to
    its first dot, `source_identifier(source)`), and going on past a target it cannot score
    (`skip_errors`: a warning names it and it is left out) where by default the error is raised.
    """
    source_file = read_features(source, encrypted=False)
    target_dir = Path(target_dir)
    if not target_dir.is_dir():
        raise FeatureFileError(f"{target_dir}: not a folder of target feature files")
    targets = sorted(
        p
        for p in target_dir.glob(pattern)
        if p.resolve() != Path(source).resolve() and (identifier is None or identifier in str(p))
    )
    if not targets:
        which = f" containing {identifier!r}" if identifier is not None else ""
        raise FeatureFileError(f"{target_dir}: no target feature files matching {pattern!r}{which}")
    row = {normalise_path(p): i for i, p in enumerate(source_file.paths)}
    out = {}
    for path in targets:
        try:
            out[path.relative_to(target_dir).as_posix()] = _target_distance(
                path, source, source_file, row
            )
        except FeatureFileError as err:
            if not skip_errors:
                raise
            warnings.warn(f"{err}; left out", stacklevel=2)
    return out


def source_identifier(source: str | Path) -> str:
    """The published evaluation's filter: the source file's name up to its first dot."""
    return Path(source).name.split(".")[0]


def _target_distance(
    path: Path, source: str | Path, source_file: FeatureFile, row: dict[str, int]
) -> float:
    """Mean cosine distance of the target file at `path` to the source rows of its paths."""
    target = read_features(path, encrypted=False)
    if target.features.shape[1] != source_file.features.shape[1]:
        raise FeatureFileError(
            f"{path}: {target.features.shape[1]}-D features, the source {source} has "
            f"{source_file.features.shape[1]}-D"
        )
    paths = [normalise_path(p) for p in target.paths]
    missing = [p for p in paths if p not in row]
    if missing:
        raise FeatureFileError(
            f"{path}: {len(missing)} image paths are not in the source {source} (e.g. {missing[0]})"
        )
    matched = source_file.features[[row[p] for p in paths]]
    return float(np.mean(cosine_distances(target.features, matched)))
