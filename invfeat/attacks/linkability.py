"""Linkability: can an attacker who sees only protected vectors tell that two of them show one
person, seen by two cameras?

The attacker reads each vector without the key (`ciphertext.encode_features`: popcount, columns,
bits, ...), ranks a gallery for each query by cosine distance over those readings, and scores the
pairs. Three figures, as ISO/IEC 30136 and Gomez-Barrero et al. (IEEE TIFS 2018) ask: rank-1 and
mAP under the re-ID protocol (same identity and camera left out) against the chance rank-1, the
same after a metric the attacker learns on its own labelled set (`learn_metric`), and the global
unlinkability score D_sys over mated and non-mated pair scores (`d_sys`). Plaintext features
read as floats are the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.linalg
import scipy.stats

from invfeat.metrics import chance_rank1, reid_metrics

Metric = Callable[[Any], np.ndarray]


def _rows(x: Any, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be a non-empty finite [N, D] array, got shape {x.shape}")
    return x


def learn_metric(
    readings: Any, ids: Any, *, max_dims: int = 512, shrinkage: float = 0.01
) -> Metric:
    """A projection learned on the attacker's own labelled readings [N, D] with identities [N]:
    standardise each reading, keep the top `max_dims` principal components, then LDA (the
    directions that maximise between-identity over within-identity variance, the within-identity
    scatter shrunk by `shrinkage` towards its mean variance), each direction whitened and then
    weighed by how much identity it carries, so that the cosine afterwards listens to what
    separates people and not to what varies within one person.

    Returns `apply(readings [M, D]) -> float32 [M, K]`, K <= min(identities - 1, max_dims).
    """
    x = _rows(readings, "readings")
    ids = np.asarray(ids)
    if ids.shape != (x.shape[0],):
        raise ValueError(f"ids must have shape ({x.shape[0]},), got {ids.shape}")
    classes, labels = np.unique(ids, return_inverse=True)
    if len(classes) < 2:
        raise ValueError("learn_metric needs at least two identities")
    if not 0.0 <= shrinkage < 1.0:
        raise ValueError(f"shrinkage must be in [0, 1), got {shrinkage}")
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    scale = np.where(std > 1e-8 * max(float(std.max()), 1e-30), std, np.inf)  # constant: dropped
    z = (x - mean) / scale
    # principal components: through the smaller of the D x D covariance and the N x N Gram matrix
    n, d = z.shape
    k = min(max_dims, n - 1, d)
    if d <= n:
        vals, vecs = scipy.linalg.eigh(z.T @ z, subset_by_index=(d - k, d - 1))
        pca = vecs
    else:
        vals, vecs = scipy.linalg.eigh(z @ z.T, subset_by_index=(n - k, n - 1))
        pca = z.T @ vecs / np.sqrt(np.maximum(vals, 1e-12))
    keep = vals > 1e-10 * max(float(vals.max()), 1e-30)
    pca = pca[:, keep]
    p = z @ pca
    # LDA in the principal subspace
    counts = np.bincount(labels).astype(np.float64)
    means = np.zeros((len(classes), p.shape[1]))
    np.add.at(means, labels, p)
    means /= counts[:, None]
    within = p - means[labels]
    s_w = within.T @ within / n
    s_w = (1 - shrinkage) * s_w + shrinkage * np.trace(s_w) / len(s_w) * np.eye(len(s_w))
    centred = (means - p.mean(axis=0)) * np.sqrt(counts / n)[:, None]
    s_b = centred.T @ centred
    m = len(s_w)
    lda_dims = min(len(classes) - 1, m)
    ratios, lda = scipy.linalg.eigh(s_b, s_w, subset_by_index=(m - lda_dims, m - 1))
    # Each direction has within-identity variance 1; its between-identity variance `ratios` holds
    # the noise of the identities' mean readings, about C / (N - C), which a direction that
    # carries no identity shows alone. Weigh each by its signal to (signal + 1), so that the
    # cosine listens to the directions that separate people and not to the many that do not.
    signal = np.maximum(ratios - len(classes) / max(n - len(classes), 1), 0.0)
    projection = pca @ (lda * np.sqrt(signal / (1.0 + signal)))

    def apply(new_readings: Any) -> np.ndarray:
        y = _rows(new_readings, "readings")
        if y.shape[1] != d:
            raise ValueError(f"the metric was learned on {d}-d readings, got {y.shape[1]}-d")
        return (((y - mean) / scale) @ projection).astype(np.float32)

    return apply


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def score_pairs(
    query_readings: Any,
    query_ids: Any,
    query_cams: Any,
    gallery_readings: Any,
    gallery_ids: Any,
    gallery_cams: Any,
    *,
    max_pairs: int = 200_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(mated, non-mated) cosine similarities of query-gallery pairs: mated pairs show one identity
    seen by different cameras, non-mated pairs two identities; either set above `max_pairs` is
    sub-sampled without replacement (seeded)."""
    q = _rows(query_readings, "query_readings")
    g = _rows(gallery_readings, "gallery_readings")
    qid, qcam = np.asarray(query_ids), np.asarray(query_cams)
    gid, gcam = np.asarray(gallery_ids), np.asarray(gallery_cams)
    similarity = _cosine(q, g)
    same_id = qid[:, None] == gid[None]
    mated = similarity[same_id & (qcam[:, None] != gcam[None])]
    non_mated = similarity[~same_id]
    rng = np.random.default_rng(seed)
    pick = lambda s: s if len(s) <= max_pairs else s[rng.choice(len(s), max_pairs, replace=False)]
    return pick(mated), pick(non_mated)


def d_sys(mated_scores: Any, non_mated_scores: Any, *, bins: int | None = None, omega: float = 1.0):
    """The global unlinkability score D_sys in [0, 1] of Gomez-Barrero, Galbally, Rathgeb and
    Busch, "General Framework to Evaluate Unlinkability in Biometric Template Protection
    Systems", IEEE TIFS 13(6), 2018 (ISO/IEC 30136): 0 where mated and non-mated scores follow one
    distribution (fully unlinkable), 1 where they never overlap (fully linkable).

        LR(s)     = p(s | H_m) / p(s | H_nm)
        D_<->(s)  = max(0, 2 LR(s) omega / (1 + LR(s) omega) - 1)    (1 where p(s | H_nm) = 0)
        D_sys     = integral of D_<->(s) p(s | H_m) ds

    with omega = P(H_m) / P(H_nm) the ratio of priors (1 by default, as in the paper's
    evaluation). The densities are histograms over `bins` common bins spanning both sets (by
    default min(mated / 10, 100), as the authors' code), and the integral is the sum over bins
    of D_<-> times the mated probability mass of the bin. A histogram estimate is biased upwards
    for finite samples: compare against `d_sys_null` before calling a system linkable.
    """
    mated = np.asarray(mated_scores, np.float64).ravel()
    non_mated = np.asarray(non_mated_scores, np.float64).ravel()
    if len(mated) == 0 or len(non_mated) == 0:
        raise ValueError("d_sys needs at least one mated and one non-mated score")
    if not (np.all(np.isfinite(mated)) and np.all(np.isfinite(non_mated))):
        raise ValueError("d_sys needs finite scores")
    if omega <= 0:
        raise ValueError(f"omega must be positive, got {omega}")
    bins = bins or max(1, min(len(mated) // 10, 100))
    low = min(mated.min(), non_mated.min())
    high = max(mated.max(), non_mated.max())
    edges = np.linspace(low, high, bins + 1) if high > low else np.array([low - 0.5, low + 0.5])
    p_mated = np.histogram(mated, edges)[0] / len(mated)  # probability mass per bin
    p_non_mated = np.histogram(non_mated, edges)[0] / len(non_mated)
    ratio = omega * np.divide(
        p_mated, p_non_mated, out=np.zeros_like(p_mated), where=p_non_mated > 0
    )  # equal bin widths: the ratio of masses is the ratio of densities
    local = np.maximum(0.0, 2 * ratio / (1 + ratio) - 1)
    local[(p_non_mated == 0) & (p_mated > 0)] = 1.0
    return float(np.sum(local * p_mated))


def d_sys_shuffled(
    mated_scores: Any,
    non_mated_scores: Any,
    *,
    bins: int | None = None,
    permutations: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """D_sys of `permutations` label shuffles of the same scores (the sizes of both sets kept):
    what the histogram estimate gives where nothing links."""
    mated = np.asarray(mated_scores, np.float64).ravel()
    pooled = np.concatenate([mated, np.asarray(non_mated_scores, np.float64).ravel()])
    bins = bins or max(1, min(len(mated) // 10, 100))
    rng = np.random.default_rng(seed)
    out = np.empty(permutations)
    for i in range(permutations):
        shuffled = rng.permutation(pooled)
        out[i] = d_sys(shuffled[: len(mated)], shuffled[len(mated) :], bins=bins)
    return out


def d_sys_null(
    mated_scores: Any,
    non_mated_scores: Any,
    *,
    bins: int | None = None,
    permutations: int = 20,
    seed: int = 0,
) -> float:
    """The largest D_sys of `permutations` label shuffles (`d_sys_shuffled`): the bar a measured
    D_sys must clear (at about 1 / (permutations + 1) significance)."""
    shuffled = d_sys_shuffled(
        mated_scores, non_mated_scores, bins=bins, permutations=permutations, seed=seed
    )
    return float(shuffled.max(initial=0.0))


def rank1_p_value(rank1: float, num_queries: int, chance: float) -> float:
    """One-sided p-value of observing `rank1` or more over `num_queries` queries if the ranking
    were random: the binomial tail at the mean chance, which bounds the exact (Poisson-binomial)
    tail from above once the hits exceed their expected number by one (Hoeffding 1956); below
    that the value is large either way."""
    hits = round(rank1 * num_queries)
    return float(scipy.stats.binom.sf(hits - 1, num_queries, chance))


def linkability(
    query_readings: Any,
    query_ids: Any,
    query_cams: Any,
    gallery_readings: Any,
    gallery_ids: Any,
    gallery_cams: Any,
    *,
    metric: Metric | None = None,
    bins: int | None = None,
    max_pairs: int = 200_000,
    permutations: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """{rank1, mAP, num_queries, chance_rank1, rank1_p_value, d_sys, d_sys_null,
    d_sys_shuffled_mean, d_sys_shuffled_std, mated_pairs, non_mated_pairs}: query readings [Q, D]
    ranked against gallery readings [G, D] by cosine distance under the re-ID protocol, after
    `metric` (from `learn_metric`) where given; `d_sys_null` is the largest D_sys of
    `permutations` label shuffles, beside the mean and standard deviation of theirs."""
    q = _rows(query_readings, "query_readings")
    g = _rows(gallery_readings, "gallery_readings")
    if metric is not None:
        q, g = np.asarray(metric(q), np.float64), np.asarray(metric(g), np.float64)
    qid, qcam = np.asarray(query_ids), np.asarray(query_cams)
    gid, gcam = np.asarray(gallery_ids), np.asarray(gallery_cams)
    scores = reid_metrics(q, qid, qcam, g, gid, gcam, ranks=(1,))
    chance = chance_rank1(qid, qcam, gid, gcam)
    mated, non_mated = score_pairs(q, qid, qcam, g, gid, gcam, max_pairs=max_pairs, seed=seed)
    shuffled = d_sys_shuffled(mated, non_mated, bins=bins, permutations=permutations, seed=seed)
    return {
        "rank1": scores["rank1"],
        "mAP": scores["mAP"],
        "num_queries": scores["num_queries"],
        "chance_rank1": chance,
        "rank1_p_value": rank1_p_value(scores["rank1"], scores["num_queries"], chance),
        "d_sys": d_sys(mated, non_mated, bins=bins),
        "d_sys_null": float(shuffled.max(initial=0.0)),
        "d_sys_shuffled_mean": float(shuffled.mean()),
        "d_sys_shuffled_std": float(shuffled.std(ddof=1)) if permutations > 1 else 0.0,
        "mated_pairs": len(mated),
        "non_mated_pairs": len(non_mated),
    }
