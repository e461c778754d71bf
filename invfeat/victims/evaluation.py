"""Re-ID evaluation of a victim: CMC rank-1/5/10 and mAP of query against gallery."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jax

from invfeat import metrics
from invfeat.data.datasets import open_dataset_split, prepare_dataset
from invfeat.metrics import chance_rank1
from invfeat.models.reid import ReIDModel, make_features_fn
from invfeat.train import state as S
from invfeat.victims.extraction import Embedded, HasAPI, api_embed, embed_split


def reid_scores(query: Embedded, gallery: Embedded) -> dict[str, float]:
    """rank1/rank5/rank10/mAP (fractions), num_queries and chance_rank1 of embedded query vs
    gallery."""
    scores = metrics.reid_metrics(
        query.features, query.identity, query.camera,
        gallery.features, gallery.identity, gallery.camera,
    )  # fmt: skip
    return scores | {
        "chance_rank1": chance_rank1(query.identity, query.camera, gallery.identity, gallery.camera)
    }


class ReIDEvaluator:
    """Evaluator for `fit`: rank-1 and mAP of the train state's features on query/gallery."""

    def __init__(self, model: ReIDModel, query: Any, gallery: Any, size: tuple[int, int]):
        self._features = jax.jit(make_features_fn(model))
        self._sources, self._size = (query, gallery), size

    def run(self, state: S.TrainState) -> Iterable[tuple[str, float]]:
        variables = {"params": state.params, **state.model_state}
        embed = lambda images: (self._features(variables, images), None)
        query, gallery = (embed_split(embed, s, self._size, 128) for s in self._sources)
        scores = reid_scores(query, gallery)
        return [(k, scores[k]) for k in ("rank1", "mAP")]


def evaluate_victim(
    victim: HasAPI,
    dataset: str,
    *,
    data_dir: str | Path | None = None,
    data_settings: Mapping[str, Any] | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, float]:
    """rank1/rank5/rank10/mAP (fractions), num_queries and chance_rank1 on `dataset`'s query
    vs gallery."""
    prepare_dataset(dataset, data_dir=data_dir, data_settings=data_settings)
    api = victim.api(batch_size=batch_size)
    query, gallery = (
        embed_split(
            api_embed(api),
            open_dataset_split(dataset, split, data_dir=data_dir, data_settings=data_settings),
            victim.image_size,
            api.batch_size,
            desc=f"{dataset}/{split}" if progress else None,
        )
        for split in ("query", "gallery")
    )
    return reid_scores(query, gallery)
