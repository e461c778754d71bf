"""The attribute-recognition head: features -> one logit vector per auxiliary attribute."""

from collections.abc import Sequence

import flax.linen as nn
import jax

from invfeat.models.initializers import kernel_initializer


def block_widths(feature_dim: int, num_classes: int, block_num: int) -> tuple[int, ...]:
    """Dense widths shrinking geometrically from `feature_dim` to `num_classes` in `block_num` steps.

    Block k (1-based) has width feature_dim * r**k with r = (num_classes / feature_dim)**(1/block_num),
    truncated to an integer; the last block is exactly `num_classes` wide.
    """
    if block_num < 1:
        raise ValueError(f"block_num must be >= 1, got {block_num}")
    if num_classes < 2:
        raise ValueError(f"an attribute needs at least 2 classes, got {num_classes}")
    ratio = (num_classes / feature_dim) ** (1.0 / block_num)
    widths = [max(int(feature_dim * ratio**k), 1) for k in range(1, block_num + 1)]
    widths[-1] = num_classes
    return tuple(widths)


class AttributeHead(nn.Module):
    """Per attribute: `block_num` x (BatchNorm -> Dropout -> Dense), ReLU between blocks.

    Returns a tuple of logits, one [B, C_a] array per attribute (softmax belongs to the loss).
    All attributes share the input and live in one module, so one jitted step trains them all.
    `mask` [B] (bool) leaves the False rows (a padded batch's) out of the BatchNorm statistics.
    """

    num_classes: Sequence[int]
    block_num: int = 1
    dropout_rate: float = 0.0
    bn_momentum: float = 0.99  # Keras' BatchNormalization defaults
    bn_epsilon: float = 1e-3
    kernel_init: str = "lecun_normal"  # a name of KERNEL_INITIALIZERS (Keras: "glorot_uniform")

    @nn.compact
    def __call__(
        self, features_BD: jax.Array, train: bool = False, mask_B: jax.Array | None = None
    ) -> tuple[jax.Array, ...]:
        feature_dim = features_BD.shape[-1]
        logits = []
        for a, classes in enumerate(self.num_classes):
            x = features_BD
            widths = block_widths(feature_dim, classes, self.block_num)
            for k, width in enumerate(widths):
                x = nn.BatchNorm(
                    use_running_average=not train,
                    momentum=self.bn_momentum,
                    epsilon=self.bn_epsilon,
                    name=f"attr{a}_bn{k}",
                )(x, mask=None if mask_B is None else mask_B[:, None])
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
                x = nn.Dense(
                    width,
                    kernel_init=kernel_initializer(self.kernel_init),
                    name=f"attr{a}_dense{k}",
                )(x)
                if k + 1 < len(widths):
                    x = nn.relu(x)
            logits.append(x)
        return tuple(logits)
