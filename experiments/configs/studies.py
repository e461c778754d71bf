"""The named studies of `python -m experiments demo`, `run NAME` (and `list`).

`demo` is the CPU study on the embedded synthetic world; `tiny` is the same pipeline at toy sizes
(the end-to-end test); the `paper-<dataset>-<victim>` entries are the paper's setting: FastReID
victims (BoT, AGW, SBS trained on MSMT17) read from their feature files of Market-1501 or
DukeMTMC-reID, attacked with the published hyper-parameters (300 epochs x 200 steps, batch 64,
384x128, the GAN's feature loss through an ImageNet ResNet-50), which need the real data, the
victim's feature files and a GPU.
"""

from __future__ import annotations

from experiments.configs.victims import get_victim_config
from invfeat.attacks.configs import (
    AttributeAttackConfig,
    SurrogateConfig,
    autoencoder_config,
    gan_config,
)
from invfeat.attacks.optimisation import OptimisationConfig
from invfeat.study.config import StudyConfig
from invfeat.victims.from_files import FileVictim

# Where `demo` and `tiny` keep the values their figures were measured with rather than the
# published defaults (docs/DEPARTURES.md): Flax's initialiser and optax's Adam epsilon (published:
# Keras' glorot_uniform and 1e-7); a two-block attribute head with dropout 0.5 that keeps the
# known attributes of incomplete records, trained on floor(rows / batch) full batches an epoch
# (published: one block, no dropout, such records dropped, Keras' ceil with a partial batch);
# D and G trained on the same batch (published: alternate batches); the autoencoder's last step
# (published: its best validation epoch); the query alone reconstructed (published: query and
# gallery). The autoencoder has no discriminator; its field is set alike so its config reads
# the same.
_PINNED_TRAINING = dict(initializer="lecun_normal", adam_epsilon=1e-8)
_PINNED_HEAD = dict(
    block_num=2,
    dropout=0.5,
    drop_incomplete_records=False,
    partial_batches=False,
    **_PINNED_TRAINING,
)
_PINNED_BATCHES = dict(separate_batches=False, keep_best=False, **_PINNED_TRAINING)
_PINNED_STUDY = dict(reconstructed_splits=("query",))

# The demo's decoders: narrower and faster-learning than published, for about 1/100 of its steps.
_DEMO_DECODER = dict(
    learning_rate=1e-3,
    batch_size=32,
    epochs=1,
    smallest_channels=64,
    decoder_filters=8,
    **_PINNED_BATCHES,
)

STUDIES: dict[str, StudyConfig] = {
    c.name: c
    for c in (
        StudyConfig(
            name="demo",
            description="the whole study on the synthetic world (synth_msmt victim, attacked on "
            "synth_market), CPU",
            victim=get_victim_config("cpu"),
            attack_dataset="synth_market",
            attributes=AttributeAttackConfig(learning_rate=1e-3, epochs=15, **_PINNED_HEAD),
            surrogate=SurrogateConfig(widths=(16, 32, 64), epochs=4),
            autoencoder=autoencoder_config(steps_per_epoch=400, **_DEMO_DECODER),
            gan=gan_config(steps_per_epoch=350, discriminator_filters=16, **_DEMO_DECODER),
            optimisation=OptimisationConfig(
                steps=100, learning_rate=0.005, total_variation=0.01, init="given", batch_size=64
            ),
            **_PINNED_STUDY,
        ),
        StudyConfig(
            name="tiny",
            description="the whole pipeline at toy sizes (seconds per stage; the end-to-end test)",
            victim=get_victim_config(
                "tiny",
                data_settings={"num_train_identities": 24, "num_test_identities": 12},
            ),
            attack_dataset="synth_market",
            attack_data_settings={"num_train_identities": 24, "num_test_identities": 12},
            attributes=AttributeAttackConfig(
                learning_rate=1e-3, epochs=2, batch_size=16, **_PINNED_HEAD
            ),
            surrogate=SurrogateConfig(widths=(8, 16), epochs=1, steps_per_epoch=2, batch_size=16),
            autoencoder=autoencoder_config(
                learning_rate=1e-3, batch_size=16, epochs=1, steps_per_epoch=3, dense_units=16,
                smallest_channels=16, decoder_filters=4, **_PINNED_BATCHES,
            ),
            gan=gan_config(
                learning_rate=1e-3, batch_size=16, epochs=1, steps_per_epoch=4, dense_units=16,
                smallest_channels=16, decoder_filters=4, discriminator_filters=4,
                **_PINNED_BATCHES,
            ),
            optimisation=OptimisationConfig(steps=4, init="given", batch_size=8, curve_every=2),
            grid_images=4,
            api_batch_size=32,
            **_PINNED_STUDY,
        ),
    )
}  # fmt: skip

PAPER_DATASETS = {"market": "market1501", "duke": "dukemtmc_reid"}
PAPER_VICTIMS = {"bot": "BoT (bag of tricks)", "agw": "AGW", "sbs": "SBS (stronger baseline)"}
# INPUT.SIZE_TEST of FastReID's configs (configs/Base-bagtricks.yml, which Base-AGW.yml keeps;
# Base-SBS.yml): the size each victim's own extractor resizes its input to
FASTREID_TEST_SIZES = {"bot": (256, 128), "agw": (256, 128), "sbs": (384, 128)}
PAPER_REQUIRES = (
    "GPU",
    "the real dataset, built (`data build --manual-dir`)",
    "the victim's FastReID feature files (--victim-features DIR)",
    "Keras ResNet-50 ImageNet weights (--perceptual-weights FILE.h5)",
)


def _paper_study(dataset: str, victim: str) -> StudyConfig:
    """The published attack hyper-parameters on a FastReID victim: the configs' defaults, the
    GAN's ImageNet ResNet-50 and its discriminator's own learning rate (`learning_rate_of_D`),
    as tests/data/published_hyperparameters.json records and tests/test_config_published.py
    checks."""
    return StudyConfig(
        name=f"paper-{dataset}-{victim}",
        description=f"the paper: FastReID {PAPER_VICTIMS[victim]} trained on MSMT17, attacked "
        f"on {PAPER_DATASETS[dataset]}",
        victim=FileVictim(
            name=f"fastreid-{victim}-msmt17",
            image_size=(384, 128),
            test_size=FASTREID_TEST_SIZES[victim],
        ),
        attack_dataset=PAPER_DATASETS[dataset],
        gan=gan_config(perceptual="resnet50-imagenet", discriminator_learning_rate=1e-4),
        requires=PAPER_REQUIRES,
    )


STUDIES |= {c.name: c for c in (_paper_study(d, v) for d in PAPER_DATASETS for v in PAPER_VICTIMS)}


def get_study(name: str) -> StudyConfig:
    """The named configuration; ValueError listing the names."""
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; choose from {sorted(STUDIES)}")
    return STUDIES[name]
