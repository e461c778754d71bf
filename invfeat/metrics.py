"""Pure metrics: re-ID retrieval (CMC, mAP, the chance rank-1), balanced accuracy and its
baselines, PSNR, SSIM."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from invfeat.losses import safe_norm


def l2_normalize(x_ND: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Rows scaled to unit length (zero rows stay zero; a finite gradient there, not NaN)."""
    x = x_ND.astype(jnp.float32)
    return x / jnp.maximum(safe_norm(x, axis=-1, keepdims=True), eps)


@jax.jit
def query_block(q_BD, qid_B, qcam_B, g_GD, gid_G, gcam_G):
    """Per query: 0-based rank of the first true match (G if none), AP, has-a-match."""
    # HIGHEST: a DEFAULT float32 matmul is TF32 on recent GPUs and would reorder close entries.
    similarity = jnp.matmul(l2_normalize(q_BD), g_GD.T, precision=jax.lax.Precision.HIGHEST)
    dist = 1.0 - similarity
    order = jnp.argsort(dist, axis=1, stable=True)
    same_id = gid_G[order] == qid_B[:, None]
    keep = ~(same_id & (gcam_G[order] == qcam_B[:, None]))
    match = same_id & keep
    position = jnp.cumsum(keep, axis=1)  # 1-based position among kept entries
    first = jnp.min(jnp.where(match, position - 1, g_GD.shape[0]), axis=1)
    num_matches = jnp.sum(match, axis=1)
    precision = jnp.cumsum(match, axis=1) / jnp.maximum(position, 1)
    ap = jnp.sum(jnp.where(match, precision, 0.0), axis=1) / jnp.maximum(num_matches, 1)
    return first, ap, num_matches > 0


def reid_per_query(
    query_features: Any,
    query_ids: Any,
    query_cams: Any,
    gallery_features: Any,
    gallery_ids: Any,
    gallery_cams: Any,
    block_size: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first-match rank [Q] (0 = rank-1), average precision [Q], has-a-valid-match [Q]).

    The gallery is ranked by cosine distance (full float32 on every backend) and, as FastReID and
    torchreid do, entries with the query's identity *and* camera are dropped. Queries go in
    blocks of `block_size` (the last one padded), so memory holds one block x gallery matrix.
    """
    q = np.asarray(query_features, np.float32)
    gallery_features = jnp.asarray(gallery_features)
    for name, arr in (("query_features", q), ("gallery_features", gallery_features)):
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty [N, D] array, got shape {arr.shape}")
        if not bool(jnp.all(jnp.isfinite(arr))):
            raise ValueError(f"{name} holds NaN or infinite values: no ranking is defined")
    if q.shape[1] != gallery_features.shape[1]:
        raise ValueError(
            f"query_features are {q.shape[1]}-d but gallery_features {gallery_features.shape[1]}-d"
        )
    num_q, num_g = q.shape[0], gallery_features.shape[0]
    for name, arr, n in (
        ("query_ids", query_ids, num_q),
        ("query_cams", query_cams, num_q),
        ("gallery_ids", gallery_ids, num_g),
        ("gallery_cams", gallery_cams, num_g),
    ):
        if np.shape(arr) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {np.shape(arr)}")
    g = l2_normalize(gallery_features)
    gid = jnp.asarray(gallery_ids, jnp.int32)
    gcam = jnp.asarray(gallery_cams, jnp.int32)
    block = max(1, min(block_size, num_q))
    pad = -num_q % block
    q = np.pad(q, ((0, pad), (0, 0)))
    qid = np.pad(np.asarray(query_ids, np.int32), (0, pad))
    qcam = np.pad(np.asarray(query_cams, np.int32), (0, pad))
    outs = [
        query_block(q[s : s + block], qid[s : s + block], qcam[s : s + block], g, gid, gcam)
        for s in range(0, num_q + pad, block)
    ]
    first, ap, valid = (np.concatenate([np.asarray(o[i]) for o in outs])[:num_q] for i in range(3))
    return first, ap, valid


def reid_metrics(*args: Any, ranks: tuple[int, ...] = (1, 5, 10), **kwargs: Any) -> dict:
    """{"rank1", "rank5", "rank10", "mAP", "num_queries"} (fractions in [0, 1]) over the queries
    with a true match; arguments as `reid_per_query`."""
    first, ap, valid = reid_per_query(*args, **kwargs)
    if not valid.any():
        raise ValueError("no query has a true match in the gallery (other than same camera)")
    out = {f"rank{k}": float(np.mean(first[valid] < k)) for k in ranks}
    out["mAP"] = float(np.mean(ap[valid]))
    out["num_queries"] = int(valid.sum())
    return out


def chance_rank1(
    query_ids: np.ndarray, query_cams: np.ndarray, gallery_ids: np.ndarray, gallery_cams: np.ndarray
) -> float:
    """Expected rank-1 of a uniformly random gallery ranking, under the evaluation's protocol:
    same-identity-same-camera entries excluded, queries without a true match left out."""
    rates = []
    for start in range(0, len(query_ids), 512):
        same_id = query_ids[start : start + 512, None] == gallery_ids[None]
        junk = same_id & (query_cams[start : start + 512, None] == gallery_cams[None])
        matches, kept = (same_id & ~junk).sum(1), len(gallery_ids) - junk.sum(1)
        rates.append((matches / np.maximum(kept, 1))[matches > 0])
    return float(np.mean(np.concatenate(rates)))


def balanced_accuracy(labels_NA: Any, predictions_NA: Any, num_classes: int) -> jax.Array:
    """Mean per-class recall per attribute (sklearn's, not adjusted), labels -1 ignored.

    Classes absent from the labels are left out of the mean (as sklearn does); `num_classes`
    bounds the class indices of every attribute. [N] inputs give a scalar, [N, A] give [A];
    an attribute with no known label gives NaN.
    """
    labels = jnp.asarray(labels_NA)
    preds = jnp.asarray(predictions_NA)
    if labels.shape != preds.shape or labels.ndim not in (1, 2):
        raise ValueError(
            "labels_NA and predictions_NA must be two [N] or [N, A] arrays of one shape, got "
            f"{labels.shape} and {preds.shape}"
        )
    squeeze = labels.ndim == 1
    if squeeze:
        labels, preds = labels[:, None], preds[:, None]
    true_NAK = jax.nn.one_hot(labels, num_classes)  # -1 gives an all-zero row
    count_AK = jnp.sum(true_NAK, axis=0)
    correct_AK = jnp.sum(true_NAK * (preds == labels)[..., None], axis=0)
    present = count_AK > 0
    recall = jnp.where(present, correct_AK / jnp.maximum(count_AK, 1), 0.0)
    score = jnp.sum(recall, axis=-1) / jnp.sum(present, axis=-1)
    return score[0] if squeeze else score


def chance_balanced_accuracy(num_classes: Any) -> Any:
    """Expected balanced accuracy of guessing uniformly among `num_classes`: 1 / num_classes.

    Each present class is hit with probability 1/K whatever its size, so the mean recall is 1/K.
    """
    return 1.0 / np.asarray(num_classes, np.float64)


def majority_balanced_accuracy(labels_NA: Any, num_classes: int) -> jax.Array:
    """Balanced accuracy of always predicting the majority class: 1 / (number of present classes).

    The constant prediction recalls all of its own class and none of the others; the majority
    class of the evaluated split is present in it by definition. Labels -1 are ignored; an
    attribute with no known label gives NaN (as `balanced_accuracy`).
    """
    labels = jnp.asarray(labels_NA)
    counts = jnp.sum(jax.nn.one_hot(labels, num_classes), axis=0)
    present = jnp.sum(counts > 0, axis=-1)
    return jnp.where(present > 0, 1.0 / jnp.maximum(present, 1), jnp.nan)


def psnr(images_BHWC: Any, reconstructions_BHWC: Any, max_value: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio per image [B] in dB; MSE floored at 1e-10 (identical: 100 dB)."""
    x = jnp.asarray(images_BHWC, jnp.float32)
    y = jnp.asarray(reconstructions_BHWC, jnp.float32)
    if x.shape != y.shape or x.ndim < 2:
        raise ValueError(f"psnr needs two [B, ...] arrays of one shape: {x.shape}, {y.shape}")
    err = jnp.mean(jnp.square(x - y), axis=tuple(range(1, x.ndim)))
    return 10.0 * jnp.log10(max_value**2 / jnp.maximum(err, 1e-10))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2
    window = np.exp(-(coords**2) / (2 * sigma**2))
    return (window / window.sum()).astype(np.float32)


def ssim(
    images_BHWC: Any,
    reconstructions_BHWC: Any,
    max_value: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """Structural similarity per image [B] (Wang et al. 2004), mean over channels and positions.

    Gaussian window 11 / sigma 1.5, valid positions only (as tf.image.ssim), constants
    (k1 L)^2 and (k2 L)^2 with L = max_value.
    """
    x = jnp.asarray(images_BHWC, jnp.float32)
    y = jnp.asarray(reconstructions_BHWC, jnp.float32)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim needs two [B, H, W, C] arrays of one shape: {x.shape}, {y.shape}")
    if min(x.shape[1:3]) < window_size:
        raise ValueError(f"images {x.shape[1:3]} are smaller than the SSIM window {window_size}")
    w = jnp.asarray(gaussian_window(window_size, sigma))
    channels = x.shape[-1]

    def blur(z):
        kh = jnp.tile(w[:, None, None, None], (1, 1, 1, channels))
        kw = jnp.tile(w[None, :, None, None], (1, 1, 1, channels))
        dims = ("NHWC", "HWIO", "NHWC")
        for kernel in (kh, kw):
            z = jax.lax.conv_general_dilated(
                z,
                kernel,
                (1, 1),
                "VALID",
                dimension_numbers=dims,
                feature_group_count=channels,
                precision=jax.lax.Precision.HIGHEST,
            )
        return z

    c1, c2 = (k1 * max_value) ** 2, (k2 * max_value) ** 2
    # Moments of the images centred on their own means: the same SSIM, less float32 cancellation.
    mean_x = jnp.mean(x, axis=(1, 2), keepdims=True)
    mean_y = jnp.mean(y, axis=(1, 2), keepdims=True)
    xc, yc = x - mean_x, y - mean_y
    muc_x, muc_y = blur(xc), blur(yc)
    var_x = blur(xc * xc) - muc_x**2
    var_y = blur(yc * yc) - muc_y**2
    cov = blur(xc * yc) - muc_x * muc_y
    mu_x, mu_y = muc_x + mean_x, muc_y + mean_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return jnp.mean(num / den, axis=(1, 2, 3))
