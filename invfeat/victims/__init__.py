"""What is attacked: a victim trained here (`TrainedVictim`, from a `VictimConfig`) or known by
its feature files (`FileVictim`), both behind the `Victim` interface of `base`.

- `base`: the `Victim` and `VictimSource` protocols; typed errors.
- `config`: `VictimConfig` and `settings_for`.
- `training`: `train_victim` (the BoT recipe through the engine, resumable).
- `trained`: `TrainedVictim`, `save_victim`/`load_victim` (versioned, checked files).
- `evaluation`: `evaluate_victim`, `reid_scores`, `chance_rank1`, `ReIDEvaluator`.
- `extraction`: `embed_split`, `extract_features` (FastReID-layout feature files).
- `from_files`: `FileVictim`, reconstructions scored through files made outside.

Submodules, and the names below at the package level, load on first use.
"""

from invfeat import lazy_exports

SUBMODULES = ("base", "config", "evaluation", "extraction", "from_files", "trained", "training")
EXPORTS = {
    "base": ("Victim", "VictimNotTrainedError", "VictimSource"),
    "config": ("VictimConfig", "settings_for"),
    "evaluation": ("chance_rank1", "evaluate_victim", "reid_scores"),
    "extraction": ("extract_features", "feature_paths"),
    "from_files": ("FileVictim",),
    "trained": (
        "CONFIG_FILE",
        "FORMAT_VERSION",
        "SUMMARY_FILE",
        "VARIABLES_FILE",
        "TrainedVictim",
        "VictimFileError",
        "inference_model",
        "load_victim",
        "save_victim",
    ),
    "training": ("make_init_fn", "random_erasing", "train_on_source", "train_victim"),
}
__all__ = [*SUBMODULES, *(name for names in EXPORTS.values() for name in names)]
__getattr__, __dir__ = lazy_exports(__name__, SUBMODULES, EXPORTS)
