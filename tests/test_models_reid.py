"""The victim re-ID model: shapes, dtypes, BNNeck, GeM, last stride, a few training steps."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import get_victim_config
from invfeat import losses
from invfeat.models.reid import (
    CONFIGS,
    GeM,
    ReIDModel,
    get_config,
    init_variables,
    make_features_fn,
)
from invfeat.models.resnet import ResNet, resnet, stem_max_pool

TINY = get_config("cpu-tiny")


@pytest.fixture(scope="module")
def tiny():
    model = TINY.build(num_classes=4)
    # rbg keys: the threefry init of ~30 tensors takes ~20 s to compile on a busy CPU.
    variables = init_variables(model, jax.random.key(0, impl="rbg"), TINY.image_size)
    images = jax.random.uniform(jax.random.key(1), (8, *TINY.image_size, 3))
    return model, variables, images


def test_outputs_shapes_and_float32_params(tiny):
    model, variables, images = tiny
    out = model.apply(variables, images, train=False)
    assert out["features"].shape == (8, TINY.feature_dim) == (8, 64)
    assert out["global"].shape == (8, 64) and out["logits"].shape == (8, 4)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
    assert "bias" not in variables["params"]["classifier"]
    feats = make_features_fn(model)(variables, images)
    np.testing.assert_array_equal(feats, out["features"])


def test_bfloat16_compute_keeps_float32_params_and_outputs(tiny):
    _, variables, images = tiny
    model_bf16 = TINY.build(num_classes=4, dtype=jnp.bfloat16)
    out = model_bf16.apply(variables, images, train=False)
    assert out["features"].dtype == jnp.float32
    ref = TINY.build(num_classes=4).apply(variables, images, train=False)["features"]
    cos = jnp.sum(out["features"] * ref, -1) / (
        jnp.linalg.norm(out["features"], axis=-1) * jnp.linalg.norm(ref, axis=-1)
    )
    assert float(cos.min()) > 0.98


def test_training_steps_decrease_loss_and_leave_bnneck_bias_frozen(tiny):
    model, variables, images = tiny
    labels = jnp.array([0, 0, 1, 1, 2, 2, 3, 3])
    tx = optax.adam(3e-3)

    def loss_fn(params, batch_stats):
        out, upd = model.apply(
            {"params": params, "batch_stats": batch_stats},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        loss = losses.cross_entropy(out["logits"], labels, 0.1)
        return loss + losses.batch_hard_triplet(out["global"], labels), upd["batch_stats"]

    @jax.jit
    def step(params, batch_stats, opt_state):
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_stats)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state, loss, grads

    params, stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)
    history = []
    for _ in range(8):
        params, new_stats, opt_state, loss, grads = step(params, stats, opt_state)
        history.append(float(loss))
    assert history[-1] < 0.7 * history[0], history
    assert not np.allclose(new_stats["backbone"]["bn1"]["mean"], stats["backbone"]["bn1"]["mean"])
    np.testing.assert_array_equal(grads["bottleneck"]["bias"], 0.0)
    np.testing.assert_array_equal(params["bottleneck"]["bias"], 0.0)


def test_last_stride_one_keeps_a_sixteenth_of_the_input():
    x = jnp.zeros((1, 64, 32, 3))
    for last_stride, expected in ((1, (4, 2)), (2, (2, 1))):
        net = ResNet(stage_sizes=(1, 1, 1, 1), width=4, last_stride=last_stride)
        v = jax.eval_shape(lambda net=net: net.init(jax.random.key(0), x, train=False))
        out = jax.eval_shape(lambda v, net=net: net.apply(v, x, train=False), v)
        assert out.shape[1:3] == expected


def test_backbone_size_equals_the_plain_model_on_resized_images(tiny):
    model, variables, images = tiny
    upsampled = dataclasses.replace(TINY, backbone_size=(48, 24)).build(num_classes=4)
    out = upsampled.apply(variables, images, train=False)["features"]
    resized = jax.image.resize(images, (8, 48, 24, 3), "linear")
    np.testing.assert_allclose(
        out, model.apply(variables, resized, train=False)["features"], rtol=1e-4, atol=1e-5
    )
    assert CONFIGS["cpu-small"].build().backbone_size == (96, 48)


@pytest.mark.parametrize("height, width", [(16, 8), (17, 9)])
def test_stem_max_pool_matches_pytorch_in_both_modes(height, width):
    """The "ceil" mode is FastReID's stem (MaxPool2d(3, 2, ceil_mode=True)), which loaded FastReID
    weights need; "pad" is torchvision's (padding 1). Same shape at even sizes, other values."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(2, height, width, 3)).astype(np.float32)
    x_t = torch.from_numpy(x).permute(0, 3, 1, 2)
    for mode, pool_t in (
        ("ceil", torch.nn.MaxPool2d(3, 2, ceil_mode=True)),
        ("pad", torch.nn.MaxPool2d(3, 2, padding=1)),
    ):
        expected = pool_t(x_t).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(stem_max_pool(jnp.asarray(x), mode), expected)
    with pytest.raises(ValueError, match="stem_pool"):
        stem_max_pool(jnp.asarray(x), "floor")


def test_fastreid_checkpoints_load_with_fastreid_stem():
    from test_fastreid import fastreid_state

    from invfeat.models import fastreid

    state = fastreid_state(False, 4, (1, 1, 1, 1), 3, gem=False)
    assert fastreid.infer_model(state).stem_pool == "ceil"
    assert fastreid.infer_model(state, stem_pool="pad").stem_pool == "pad"
    assert TINY.build().stem_pool == "pad"  # invfeat's own victims keep torchvision's stem


def test_gem_pooling_interpolates_mean_and_max():
    x = jax.random.uniform(jax.random.key(2), (2, 3, 5, 4)) + 0.1
    gem = GeM()
    v = gem.init(jax.random.key(0), x)
    assert v["params"]["p"].shape == (1,)
    mean = gem.apply({"params": {"p": jnp.array([1.0])}}, x)
    np.testing.assert_allclose(mean, x.mean(axis=(1, 2)), rtol=1e-5)
    big = gem.apply({"params": {"p": jnp.array([60.0])}}, x)
    np.testing.assert_allclose(big, x.max(axis=(1, 2)), rtol=0.05)


def test_gem_and_bottleneck_model_shapes_without_compiling():
    model = ReIDModel(stage_sizes=(1, 1, 1, 1), bottleneck=True, width=4, pooling="gem")
    x = jnp.zeros((2, 32, 16, 3))
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    out = jax.eval_shape(lambda v: model.apply(v, x, train=False), v)
    assert out["features"].shape == (2, 128) and "logits" not in out
    assert "p" in v["params"]["pool"]


def test_resnet50_config_is_the_fastreid_size():
    config = CONFIGS["resnet50"]
    model = config.build(num_classes=751)
    v = jax.eval_shape(lambda: init_variables(model, jax.random.key(0), config.image_size))
    backbone = sum(x.size for x in jax.tree.leaves(v["params"]["backbone"]))
    assert config.feature_dim == 2048 and config.image_size == (256, 128)
    assert backbone == 23_508_032  # torchvision resnet50 without fc
    assert resnet(50).out_channels == 2048 and resnet(18).out_channels == 512


def test_bad_inputs_raise_clear_errors(tiny):
    model, variables, _ = tiny
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        model.apply(variables, jnp.zeros((2, 32, 16)), train=False)
    with pytest.raises(ValueError, match="unknown victim config"):
        get_config("nope")
    with pytest.raises(ValueError, match="depth"):
        resnet(20)


# ---- the victim files (victim.json + victim.msgpack) -------------------------------------------


@pytest.fixture(scope="module")
def saved_victim(tmp_path_factory):
    """A cpu-tiny victim with zero variables, saved (no init program compiled)."""
    from invfeat import victims as V

    config = get_victim_config("tiny")
    model = V.inference_model(config)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, *config.input_size, 3)), train=False)
    )
    variables = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    workdir = tmp_path_factory.mktemp("victim")
    V.save_victim(workdir, V.TrainedVictim(config, model, variables, {"steps": 0}))
    return workdir


def _corrupt_summary(record):
    return {
        "not json": b"{config",
        "a list": b"[1, 2]",
        "no config": json.dumps({k: v for k, v in record.items() if k != "config"}).encode(),
        "unknown field": json.dumps(record | {"config": record["config"] | {"lr": 1}}).encode(),
        "unknown model": json.dumps(
            record | {"config": record["config"] | {"model": "x"}}
        ).encode(),
        "format 2": json.dumps(record | {"format": 2}).encode(),
    }


@pytest.mark.parametrize(
    "case, file, message",
    [
        ("not json", "victim.json", "unreadable JSON"),
        ("a list", "victim.json", "no 'config'"),
        ("no config", "victim.json", "no 'config'"),
        ("unknown field", "victim.json", r"unknown VictimConfig fields \['lr'\]"),
        ("unknown model", "victim.json", "unknown victim config 'x'"),
        ("format 2", "victim.json", "victim file format 2, this invfeat reads format 1"),
        ("garbage", "victim.msgpack", "not a victim's variables"),
        ("empty", "victim.msgpack", "not a victim's variables"),
        ("other tree", "victim.msgpack", "do not match model 'cpu-tiny'"),
    ],
)
def test_bad_victim_files_are_refused_naming_the_file(saved_victim, tmp_path, case, file, message):
    import flax.serialization

    from invfeat import victims as V

    for name in (V.SUMMARY_FILE, V.VARIABLES_FILE):
        (tmp_path / name).write_bytes((saved_victim / name).read_bytes())
    record = json.loads((tmp_path / V.SUMMARY_FILE).read_text())
    variables = {
        "garbage": b"\xc1\x00",
        "empty": b"",
        "other tree": flax.serialization.msgpack_serialize({"params": {"a": np.zeros(3)}}),
    }
    content = (_corrupt_summary(record) | variables)[case]
    (tmp_path / file).write_bytes(content)
    with pytest.raises(V.VictimFileError, match=message) as info:
        V.load_victim(tmp_path)
    assert str(tmp_path / file) in str(info.value)


def test_victim_files_carry_their_format_and_load_back(saved_victim):
    from invfeat import victims as V

    assert json.loads((saved_victim / V.SUMMARY_FILE).read_text())["format"] == V.FORMAT_VERSION
    loaded = V.load_victim(saved_victim)
    assert loaded.config == get_victim_config("tiny") and loaded.summary == {"steps": 0}


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", "truncated"])
def test_unreadable_fastreid_checkpoint_is_named(tmp_path, content):
    torch = pytest.importorskip("torch")
    from invfeat.models import fastreid

    path = tmp_path / "model_final.pth"
    if content == "truncated":
        torch.save({"model": {"backbone.conv1.weight": torch.zeros(4, 3, 7, 7)}}, path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(fastreid.FastReIDCheckpointError, match="not a readable PyTorch checkpoint"):
        fastreid.load_fastreid(path)
    with pytest.raises(fastreid.FastReIDCheckpointError, match=str(path)):
        fastreid.read_state_dict(path)
