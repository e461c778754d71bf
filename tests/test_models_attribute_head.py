"""The attribute head (invfeat/models/attribute_head.py): block widths that shrink geometrically
to each attribute's class count, one logit vector per attribute, dropout in training."""

import jax
import numpy as np
import pytest
from helpers.fast_init import fast_init

from invfeat.models.attribute_head import AttributeHead, block_widths

KEY = jax.random.key(0, impl="rbg")  # compiles far faster than threefry on CPU


def test_block_widths_shrink_geometrically_to_the_class_count():
    assert block_widths(2048, 2, 1) == (2,)
    assert block_widths(2048, 2, 2) == (64,)[:1] + (2,)  # 2048 * (2/2048)**(1/2) = 64
    assert block_widths(1000, 10, 2) == (100, 10)
    with pytest.raises(ValueError, match="block_num"):
        block_widths(16, 2, 0)


def test_attribute_head_logits_per_attribute_and_dropout():
    head = AttributeHead(num_classes=(2, 4, 9), block_num=2, dropout_rate=0.5)
    features = jax.random.normal(KEY, (6, 32))
    variables = fast_init(head.init, features)
    logits = jax.jit(head.apply)(variables, features)
    assert [x.shape for x in logits] == [(6, 2), (6, 4), (6, 9)]
    train = jax.jit(
        lambda rng: head.apply(
            variables, features, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
        )[0][0]
    )
    assert not np.allclose(train(jax.random.key(1)), train(jax.random.key(2)))  # dropout is on
    assert variables["params"]["attr2_dense0"]["kernel"].shape == (32, 16)  # int(32*(9/32)**.5)
