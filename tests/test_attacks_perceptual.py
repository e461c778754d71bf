"""What the threat model allows (invfeat/attacks/perceptual.py): gradients through the victim
itself (`white-box`) are labelled outside it."""

import jax.numpy as jnp
import numpy as np

from invfeat.attacks.perceptual import threat_model_allowed
from invfeat.models.perceptual import make_perceptual


def test_white_box_is_labelled_outside_the_threat_model():
    perceptual = make_perceptual(
        "white-box", victim_features_fn=lambda v, x: x.mean((1, 2)) * v, victim_variables=2.0
    )
    assert threat_model_allowed(perceptual) is False
    assert "threat model" in perceptual.description
    (out,) = perceptual.features(perceptual.variables, jnp.ones((2, 4, 4, 3)))
    np.testing.assert_allclose(out, 2.0)
