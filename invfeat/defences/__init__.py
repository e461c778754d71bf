"""Feature defences: transforms with a strength that a serving program applies to the features it
emits, inside the same jit as the model (as encryption is), each a pure jnp function.

| name | strength | output | what the legitimate user does with it |
| --- | --- | --- | --- |
| noise | std / the vector's RMS | [N, D], x + noise | compares noisy vectors (cosine); no inverse |
| quantise | bits per dimension (1-16) | [N, D], levels in [-1, 1] | compares them (cosine); no inverse |
| drop | fraction of dimensions | [N, D], zeros where dropped | compares them (cosine); no inverse |
| project | k / D | [N, k], x @ Q_key | compares projected vectors (cosine) |

`Defence(name, strength)` names one (frozen, JSON-able, checked); `DEFENCES` is the registry
(what each strength means); `sweep([(name, strength), ...])` checks a list of them; `build(defence,
D, key=...)` gives the pure `transform(features, rng=None)` a serving program calls, once built;
`apply_defence` builds and applies at once; `invfeat.api.FeatureAPI(..., defence=Defence(...))`
serves a model with one fused in (before encryption, if a key is set too). The transforms
themselves are in `transforms` (`add_noise`, `quantise`, `drop_dims`, `project`); the
projection's key and matrix in `projection`.

What each resists, against the attacks of this project (an attacker who knows the scheme and
its strength, Kerckhoffs). None is a cipher: the user never gets the original features back,
and each trades re-ID accuracy for what it hides, which the study measures strength by strength.
- noise: fresh noise per served vector (`fresh_noise_keys`); one who can query the API with one
  image many times averages it away (the noise of n queries shrinks as 1 / sqrt(n)). Stored
  vectors carry one draw each.
- quantise: the vector's scale and all but `bits` bits per dimension are gone; its gradient is
  the straight-through estimator, for attackers who differentiate through it.
- drop: the same dimensions are zero in every vector (`seed` chooses them; the zeros show which).
- project: a secret `ProjectionKey` (32 bytes from `secrets`, kept in memory, hidden from repr)
  determines Q [D, k] with orthonormal columns (ChaCha20 keystream, Box-Muller, sign-fixed QR:
  `projection`). At k = D, Q is orthogonal and cosines are kept exactly; under a new key the
  projections are unlinkable to the old ones (renewability, ISO/IEC 24745). It is a linear
  bijection at k = D: an attacker who queries the API learns on (image, projection) pairs as
  well as on plaintext, so it protects stored templates (linkability across keys) rather than
  the API. Q is a constant of the compiled program (guard HLO dumps and compilation caches).
"""

from invfeat import lazy_exports

SUBMODULES = ("projection", "spec", "transforms")
EXPORTS = {
    "projection": ("ProjectionKey", "projection_matrix"),
    "spec": (
        "DEFENCES",
        "Defence",
        "DefenceKind",
        "Transform",
        "apply_defence",
        "build",
        "fresh_noise_keys",
        "sweep",
    ),
    "transforms": ("add_noise", "drop_dims", "drop_mask", "project", "quantise"),
}
__all__ = [*SUBMODULES, *(name for names in EXPORTS.values() for name in names)]
__getattr__, __dir__ = lazy_exports(__name__, SUBMODULES, EXPORTS)
