"""Host arrays in and out of the attacks' programs (invfeat/attacks/arrays.py): resumable shuffled
batches of in-memory arrays, and plaintext features read as float32."""

import ml_dtypes
import numpy as np
import pytest

from invfeat.attacks.arrays import ArrayBatches, attacker_features
from invfeat.train.mesh import make_mesh


def test_array_batches_are_shuffled_epochs_and_resumable(one_device):
    arrays = {"x": np.arange(10), "y": np.arange(10) * 2}
    batches = ArrayBatches(arrays, 4, mesh=one_device, seed=3)
    first = [next(batches) for _ in range(5)]  # 20 rows: two whole epochs
    seen = np.concatenate([b["x"] for b in first])
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert not np.array_equal(seen[:10], seen[10:])
    assert all(np.array_equal(b["y"], 2 * b["x"]) for b in first)
    state = batches.get_state()
    after = next(batches)
    again = ArrayBatches(arrays, 4, mesh=one_device, seed=3)
    again.set_state(state)
    np.testing.assert_array_equal(next(again)["x"], after["x"])
    with pytest.raises(ValueError, match="does not match"):
        ArrayBatches(arrays, 2, mesh=one_device).set_state(state)
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        ArrayBatches(arrays, 4, mesh=make_mesh())


def test_bfloat16_plaintext_features_are_read_as_float32():
    features = np.float32([[0.5, -2.0, 3.0]]).astype(ml_dtypes.bfloat16)
    out = attacker_features(features, None, "train_features")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.float32([[0.5, -2.0, 3.0]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        attacker_features(np.float32([[np.nan]]).astype(ml_dtypes.bfloat16), None, "f")


def test_partial_batches_are_keras_epochs_with_a_masked_last_batch(one_device):
    """10 rows in batches of 4: three batches an epoch (the last 2 rows real, 2 masked), each
    epoch its own shuffle of every row once; resumable like the default."""
    arrays = {"x": np.arange(10)}
    batches = ArrayBatches(arrays, 4, mesh=one_device, seed=3, partial_batches=True)
    epochs = [[next(batches) for _ in range(3)] for _ in range(2)]
    for epoch in epochs:
        assert [b["mask"].tolist() for b in epoch][2] == [True, True, False, False]
        assert all(b["mask"].all() for b in epoch[:2])
        real = np.concatenate([b["x"][b["mask"]] for b in epoch])
        assert sorted(real) == list(range(10))
        assert all(len(b["x"]) == 4 for b in epoch)
    first, second = (np.concatenate([b["x"][b["mask"]] for b in e]) for e in epochs)
    assert not np.array_equal(first, second)
    state = batches.get_state()
    after = next(batches)
    again = ArrayBatches(arrays, 4, mesh=one_device, seed=3, partial_batches=True)
    again.set_state(state)
    np.testing.assert_array_equal(next(again)["x"], after["x"])
    with pytest.raises(ValueError, match="does not match"):
        again.set_state(ArrayBatches(arrays, 4, mesh=one_device, seed=3).get_state())
