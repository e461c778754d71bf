"""ShuffleBits (invfeat/shufflebits/) dropped into a model that is not invfeat's, through the
public API only.

Journeys of an engineer shipping an embedding model: a plain flax.linen CNN and a flax.nnx module,
jitted, sharded over the eight forced CPU devices, vmapped, in 16-bit floats; the program exported
with jax.export and run in a fresh process with the key loaded from its file; key files under a
permissive umask and with hand-edited fields; the errors a user meets on the way.
"""

import json
import os
import stat
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from experiments.__main__ import main
from invfeat import shufflebits as sb
from invfeat.api import FeatureAPI


class TinyCNN(nn.Module):
    """Someone's own embedding model: no invfeat config, no `train` flag, output [B, 8]."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images_BHWC: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(4, (3, 3), dtype=self.dtype)(images_BHWC)).mean((1, 2))
        return nn.Dense(8, dtype=self.dtype)(x)


class Encrypted(nn.Module):
    """The same model with the `ShuffleBits` layer last."""

    key: sb.Key | sb.Secret

    @nn.compact
    def __call__(self, images_BHWC: jax.Array, nonce: jax.Array | None = None) -> jax.Array:
        return sb.ShuffleBits(self.key)(TinyCNN()(images_BHWC), nonce)


SECRET = sb.Secret.generate()
KEY = sb.Key.generate()
IMAGES = np.random.default_rng(0).random((16, 6, 6, 3), np.float32)


def bits_of(x) -> np.ndarray:
    x = np.asarray(x)
    return x.view(f"u{x.dtype.itemsize}")


@pytest.fixture(scope="module")
def cnn():
    model = TinyCNN()
    return model, model.init(jax.random.key(0), IMAGES)


@pytest.mark.parametrize("key", [KEY, SECRET], ids=["static", "one-time"])
def test_foreign_linen_model_sharded_over_eight_devices(cnn, key):
    """with_encryption and the layer, jitted on a batch sharded over a ("data",) mesh: the
    ciphertext stays sharded and decrypts to the bits the same sharded plaintext program gives
    (XLA may round a sharded convolution differently from an unsharded one: compare like with
    like)."""
    model, variables = cnn
    mesh = jax.make_mesh((8,), ("data",))
    rows, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    images, variables = jax.device_put(IMAGES, rows), jax.device_put(variables, replicated)
    nonces = sb.fresh_nonces(len(IMAGES)) if isinstance(key, sb.Secret) else None
    plain = jax.jit(model.apply)(variables, images)

    wrapped = jax.jit(sb.with_encryption(model.apply, key))(variables, images, nonce=nonces)
    assert wrapped.sharding.is_equivalent_to(rows, 2)
    assert not np.array_equal(bits_of(wrapped), bits_of(plain))
    assert np.array_equal(bits_of(sb.decrypt(wrapped, key, nonces)), bits_of(plain))

    layered = Encrypted(key)
    layer_vars = {"params": {"TinyCNN_0": variables["params"]}}
    assert np.array_equal(
        bits_of(jax.jit(layered.apply)(layer_vars, images, nonces)), bits_of(wrapped)
    )
    assert "<hidden>" in repr(layered)  # a module's repr prints its key field: hidden


def test_vmap_per_example_and_16_bit_outputs(cnn):
    model, variables = cnn
    nonces = sb.fresh_nonces(len(IMAGES))
    batched = jax.jit(sb.with_encryption(model.apply, SECRET))(variables, IMAGES, nonce=nonces)

    def one(image_HWC, nonce_3):
        return sb.with_encryption(model.apply, SECRET)(variables, image_HWC[None], nonce=nonce_3)

    per_example = jax.jit(jax.vmap(one))(IMAGES, nonces[:, None])[:, 0]
    assert np.array_equal(bits_of(per_example), bits_of(batched))

    for dtype in (jnp.bfloat16,):  # float16 files: tests/test_cli_shufflebits.py
        half = TinyCNN(dtype)
        plain = jax.jit(half.apply)(variables, IMAGES)  # eager bf16 rounds differently: jit both
        key16 = sb.Key.generate(16)
        with pytest.raises(ValueError, match="key width 32 bits does not match"):
            jax.jit(sb.with_encryption(half.apply, KEY))(variables, IMAGES)
        static = jax.jit(sb.with_encryption(half.apply, key16))(variables, IMAGES)
        one_time = jax.jit(sb.with_encryption(half.apply, SECRET))(variables, IMAGES, nonce=nonces)
        assert static.dtype == one_time.dtype == dtype
        assert np.array_equal(bits_of(sb.decrypt(static, key16)), bits_of(plain))
        assert np.array_equal(bits_of(sb.decrypt(one_time, SECRET, nonces)), bits_of(plain))


def test_nnx_module():
    class Net(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.conv, self.dense = nnx.Conv(3, 4, (3, 3), rngs=rngs), nnx.Linear(4, 8, rngs=rngs)

        def __call__(self, x):
            return self.dense(nnx.relu(self.conv(x)).mean((1, 2)))

    net, nonces = Net(nnx.Rngs(0)), sb.fresh_nonces(len(IMAGES))
    plain = nnx.jit(lambda m, x: m(x))(net, IMAGES)
    served = nnx.jit(sb.with_encryption(lambda m, x: m(x), SECRET))(net, IMAGES, nonce=nonces)
    assert np.array_equal(bits_of(sb.decrypt(served, SECRET, nonces)), bits_of(plain))
    graphdef, state = nnx.split(net)
    apply = sb.with_encryption(lambda s, x: nnx.merge(graphdef, s)(x), KEY)
    assert np.array_equal(bits_of(sb.decrypt(jax.jit(apply)(state, IMAGES), KEY)), bits_of(plain))


def test_pytree_outputs_and_the_errors_met_on_the_way(cnn):
    model, variables = cnn

    def heads(v, x):
        f = model.apply(v, x)
        return {"embedding": f, "aux": (2 * f,)}

    out = jax.jit(sb.with_encryption(heads, KEY))(variables, IMAGES)
    with pytest.raises(TypeError, match=r"got dict: .*jax\.tree\.map"):
        sb.decrypt(out, KEY)
    back = jax.tree.map(lambda c: sb.decrypt(c, KEY), out)
    assert np.array_equal(bits_of(back["aux"][0]), bits_of(2 * model.apply(variables, IMAGES)))
    with pytest.raises(ValueError, match="reuse each nonce"):
        sb.with_encryption(heads, SECRET)(variables, IMAGES, nonce=sb.fresh_nonces(16))

    def with_labels(v, x):
        f = model.apply(v, x)
        return f, jnp.argmax(f, -1)

    with pytest.raises(TypeError, match="got a int32 array"):
        jax.jit(sb.with_encryption(with_labels, KEY))(variables, IMAGES)
    with pytest.raises(ValueError, match="at least one axis"):
        sb.encrypt(jnp.float32(1.0), SECRET, sb.fresh_nonces(()))


def test_feature_api_refuses_a_key_of_another_width_when_built(cnn):
    """It serves float32: a 16-bit key failed only at the first call, inside the trace."""
    model, variables = cnn
    with pytest.raises(ValueError, match="must be 32-bit, got 16-bit"):
        FeatureAPI(model.apply, variables, batch_size=8, key=sb.Key.generate(16))


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from jax import export
    from invfeat import shufflebits as sb
    folder = sys.argv[1]
    with open(f"{folder}/model.bin", "rb") as f:
        exported = export.deserialize(bytearray(f.read()))
    inputs = np.load(f"{folder}/inputs.npz")
    nonces = inputs["nonces"] if "nonces" in inputs.files else None
    kwargs = {} if nonces is None else {"nonce": nonces}
    cipher = np.asarray(exported.call(inputs["images"], **kwargs))
    key = sb.load_key(f"{folder}/key.json")
    plain = np.asarray(sb.decrypt(cipher, key, nonces))
    np.savez(f"{folder}/out.npz", cipher=cipher, plain=plain)
    """
)


@pytest.mark.parametrize("key", [KEY, SECRET], ids=["static", "one-time"])
def test_exported_program_in_a_fresh_process(cnn, key, tmp_path):
    """jax.export, serialize, run elsewhere: the same ciphertext bits, decrypted with the key
    loaded from its file; and the key is in the artifact, as the README warns."""
    from jax import export  # its serializer needs flatbuffers (the test extra has it)

    model, variables = cnn
    images = IMAGES[:4]
    nonces = sb.fresh_nonces(4) if isinstance(key, sb.Secret) else None
    serve = jax.jit(
        lambda x, nonce=None: sb.with_encryption(model.apply, key)(variables, x, nonce=nonce)
    )
    kwargs = {} if nonces is None else {"nonce": nonces}
    blob = export.export(serve)(images, **kwargs).serialize()
    (tmp_path / "model.bin").write_bytes(blob)
    np.savez(
        tmp_path / "inputs.npz", images=images, **({} if nonces is None else {"nonces": nonces})
    )
    key.save(tmp_path / "key.json")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], check=True, env=env)
    with np.load(tmp_path / "out.npz") as out:
        assert np.array_equal(bits_of(out["cipher"]), bits_of(serve(images, **kwargs)))
        assert np.array_equal(
            bits_of(out["plain"]), bits_of(jax.jit(model.apply)(variables, images))
        )
    if isinstance(key, sb.Secret):
        assert key.words().astype("<u4").tobytes() in blob
    else:
        masks = [m for m in key.rotation_plan()[1] if m]
        assert all(np.uint32(m).tobytes() in blob for m in masks)


def test_key_files_private_under_a_permissive_umask(tmp_path, capsys):
    old = os.umask(0)
    try:
        KEY.save(tmp_path / "key.json")
        SECRET.save(tmp_path / "secret.json")
        assert main(["shufflebits", "keygen", "--out", str(tmp_path / "cli.json")]) == 0
        assert main(["shufflebits", "keygen", "--one-time", "--out", str(tmp_path / "ot")]) == 0
    finally:
        os.umask(old)
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    before = (tmp_path / "cli.json").read_bytes()
    assert main(["shufflebits", "keygen", "--out", str(tmp_path / "cli.json")]) == 2
    assert (tmp_path / "cli.json").read_bytes() == before
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("field", ["version", "index_array"])
def test_key_file_json_booleans_are_not_numbers(tmp_path, field):
    """Python reads JSON `true` as a bool, and bools are ints equal to 1: neither a `true`
    version nor a `true` in the index array loads as the number 1."""
    path = tmp_path / "good.json"
    sb.Key.from_index_array([1, 0, *range(2, 32)]).save(path)
    data = json.loads(path.read_text())
    data[field] = [True, 0, *range(2, 32)] if field == "index_array" else True
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    bad.chmod(0o600)
    with pytest.raises(sb.KeyFileError, match="unsupported key file version|not a permutation"):
        sb.load_key(bad)
