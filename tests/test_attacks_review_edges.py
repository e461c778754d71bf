"""Edges found in a review of the attacks: the popcount reading of ciphertext, bfloat16
plaintext, attributes the attacker has no label for, tiny attack sets, image sizes that do not
divide by the decoder's doublings."""

import warnings

import jax
import ml_dtypes
import numpy as np
import pytest

from invfeat import shufflebits
from invfeat.attacks import attributes as A
from invfeat.attacks.arrays import attacker_features
from invfeat.attacks.ciphertext import encode_features, encoded_dim
from invfeat.attacks.configs import AttributeAttackConfig
from invfeat.models.decoder import Decoder, upsampling_plan
from invfeat.models.discriminator import Discriminator
from invfeat.train.mesh import make_mesh

CONFIG = AttributeAttackConfig(
    learning_rate=1e-2, batch_size=16, epochs=1, steps_per_epoch=2, eval_batch_size=16
)


@pytest.fixture(scope="module")
def one_device():
    return make_mesh(jax.devices()[:1])


def test_popcount_survives_every_bit_permutation():
    """What one-time keys cannot hide: each float's count of one-bits, read without NaN."""
    plain = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    static = np.asarray(shufflebits.encrypt(plain, shufflebits.Key.from_seed(3)))
    secret = shufflebits.Secret.generate()
    one_time = np.asarray(shufflebits.encrypt(plain, secret, shufflebits.fresh_nonces(6)))
    expected = np.vectorize(lambda w: bin(int(w)).count("1"))(plain.view(np.uint32)) / 32
    assert encoded_dim(5, "popcount") == 5
    for features in (plain, static, one_time, one_time.view(np.uint32)):
        encoded = np.asarray(encode_features(features, "popcount"))
        assert encoded.dtype == np.float32 and np.isfinite(encoded).all()
        np.testing.assert_array_equal(encoded, expected.astype(np.float32))


def test_bfloat16_plaintext_features_are_read_as_float32():
    features = np.float32([[0.5, -2.0, 3.0]]).astype(ml_dtypes.bfloat16)
    out = attacker_features(features, None, "train_features")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.float32([[0.5, -2.0, 3.0]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        attacker_features(np.float32([[np.nan]]).astype(ml_dtypes.bfloat16), None, "f")


def _world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.column_stack([rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 3, n)])
    features = np.concatenate([labels, rng.normal(size=(n, 5))], axis=1).astype(np.float32)
    return features, labels


def test_attribute_without_training_labels_is_left_out_on_a_tiny_set(tmp_path, one_device):
    """10 training rows (< batch 16); 'bag' unknown in every training row, 'hat' one class."""
    x_train, y_train = _world(10, 0)
    x_victim, y_victim = _world(7, 1)
    y_train[:, 1] = -1
    y_train[:, 2] = 1
    with pytest.warns(UserWarning, match=r"\['bag'\] have no known label in train_attributes"):
        result = A.run_attribute_attack(
            x_train,
            y_train,
            x_victim,
            y_victim,
            ("gender", "bag", "hat"),
            CONFIG,
            tmp_path,
            mesh=one_device,
            progress=False,
        )
    assert set(result.metrics) == {"gender", "hat", "mean"}
    # One class seen in training: the balanced head predicts it, the majority baseline's score.
    assert result.metrics["hat"]["balanced_accuracy"] == pytest.approx(1 / 3)
    assert result.predict(x_victim).shape == (7, 3)


def test_victims_without_any_label_are_refused_before_training(tmp_path, one_device):
    x_train, y_train = _world(10, 0)
    x_victim, y_victim = _world(7, 1)
    workdir = tmp_path / "run"
    with warnings.catch_warnings(), pytest.raises(ValueError, match="victim_attributes"):
        warnings.simplefilter("ignore")
        A.run_attribute_attack(
            x_train,
            y_train,
            x_victim,
            np.full_like(y_victim, -1),
            ("gender", "bag", "hat"),
            CONFIG,
            workdir,
            mesh=one_device,
            progress=False,
        )
    assert not workdir.exists()  # refused before anything was written or trained


@pytest.mark.parametrize(
    "size, plan",
    [
        ((384, 128), (12, 4, 5)),  # the published size: unchanged
        ((64, 32), (8, 4, 3)),  # the demo's: unchanged
        ((256, 128), (8, 4, 5)),
        ((96, 48), (12, 6, 3)),
        ((130, 66), (9, 5, 4)),  # was (65, 33, 1): one block after a 274560-unit Dense layer
        ((250, 126), (16, 8, 4)),  # was (125, 63, 1): a Dense layer of 258M weights
    ],
)
def test_upsampling_plan_of_sizes_that_do_not_divide(size, plan):
    assert upsampling_plan(*size) == plan


def test_decoder_and_discriminator_at_an_odd_size():
    decoder = Decoder(130, 66, dense_units=8, smallest_channels=4, base_filters=2)
    features = jax.random.normal(jax.random.key(0), (2, 6))
    variables = decoder.init(jax.random.key(1), features)
    images = decoder.apply(variables, features)
    assert images.shape == (2, 130, 66, 3)
    dense = variables["params"]["Dense_1"]["kernel"]
    assert dense.shape == (8, 9 * 5 * 4)
    discriminator = Discriminator(base_filters=2)
    d_variables = discriminator.init(jax.random.key(2), images, features)
    assert discriminator.apply(d_variables, images, features).shape == (2,)
