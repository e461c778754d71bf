"""FastReID checkpoints (invfeat/models/fastreid.py): name mapping on a numpy state dict; .pth
files as users have them (DataParallel prefixes, optimizer and scheduler state beside the model,
half and bfloat16 tensors, older head names, other depths), written without torch by
helpers/pth_files.write_pth; the backbones that are refused and the unreadable files, each named;
and (with torch) a real .pth whose PyTorch forward pass the JAX model must reproduce."""

from __future__ import annotations

import sys
from collections import Counter

import jax
import ml_dtypes
import numpy as np
import pytest
from helpers.pth_files import write_pth, write_zip

from invfeat.models import fastreid
from invfeat.models.reid import get_config


def fastreid_state(bottleneck: bool, width: int, stages, num_classes: int, gem: bool, seed=0):
    """A state dict with FastReID's key names and PyTorch shapes, written out by hand."""
    rng = np.random.default_rng(seed)
    sd = {}

    def conv(name, out_c, in_c, k):
        sd[f"{name}.weight"] = rng.normal(0, (2 / (k * k * out_c)) ** 0.5, (out_c, in_c, k, k))

    def bn(name, c):
        sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, c)
        sd[f"{name}.bias"] = rng.normal(0, 0.1, c)
        sd[f"{name}.running_mean"] = rng.normal(0, 0.1, c)
        sd[f"{name}.running_var"] = rng.uniform(0.5, 1.5, c)
        sd[f"{name}.num_batches_tracked"] = np.array(100)

    conv("backbone.conv1", width, 3, 7)
    bn("backbone.bn1", width)
    inplanes = width
    for s, blocks in enumerate(stages):
        planes = width * 2**s
        out = planes * (4 if bottleneck else 1)
        for i in range(blocks):
            p = f"backbone.layer{s + 1}.{i}"
            if bottleneck:
                conv(f"{p}.conv1", planes, inplanes, 1)
                conv(f"{p}.conv2", planes, planes, 3)
                conv(f"{p}.conv3", out, planes, 1)
                bn(f"{p}.bn3", out)
            else:
                conv(f"{p}.conv1", planes, inplanes, 3)
                conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn1", planes)
            bn(f"{p}.bn2", planes)
            stride = 1 if s in (0, 3) else 2
            if i == 0 and (stride != 1 or inplanes != out):
                conv(f"{p}.downsample.0", out, inplanes, 1)
                bn(f"{p}.downsample.1", out)
            inplanes = out
    if gem:
        sd["heads.pool_layer.p"] = np.array([3.5])
    bn("heads.bottleneck.0", inplanes)
    sd["heads.bottleneck.0.bias"] = np.zeros(inplanes)  # FastReID freezes it at 0
    sd["heads.weight"] = rng.normal(0, 0.01, (num_classes, inplanes))
    sd["pixel_mean"] = np.array([123.675, 116.28, 103.53]).reshape(1, 3, 1, 1)
    sd["pixel_std"] = np.array([58.395, 57.12, 57.375]).reshape(1, 3, 1, 1)
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in sd.items()}


@pytest.mark.parametrize("bottleneck,gem", [(True, True), (False, False)])
def test_mapping_by_name(bottleneck, gem):
    sd = fastreid_state(bottleneck, 4, (1, 2, 1, 1), 5, gem)
    model = fastreid.infer_model(sd)
    assert tuple(model.stage_sizes) == (1, 2, 1, 1) and model.bottleneck == bottleneck
    assert (model.width, model.num_classes) == (4, 5)
    assert model.pooling == ("gem" if gem else "avg")
    np.testing.assert_allclose(model.pixel_mean, [0.485, 0.456, 0.406], rtol=1e-6)
    v = fastreid.state_dict_to_variables(sd, model)
    params, stats = v["params"], v["batch_stats"]
    np.testing.assert_array_equal(
        params["backbone"]["layer2_1"]["conv2"]["kernel"],
        sd["backbone.layer2.1.conv2.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        params["backbone"]["layer2_0"]["downsample_bn"]["scale"],
        sd["backbone.layer2.0.downsample.1.weight"],
    )
    np.testing.assert_array_equal(
        stats["backbone"]["layer4_0"]["bn2"]["var"], sd["backbone.layer4.0.bn2.running_var"]
    )
    np.testing.assert_array_equal(
        stats["bottleneck"]["bn"]["mean"], sd["heads.bottleneck.0.running_mean"]
    )
    np.testing.assert_array_equal(params["classifier"]["kernel"], sd["heads.weight"].T)
    if gem:
        np.testing.assert_array_equal(params["pool"]["p"], [3.5])
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(v, np.zeros((1, 32, 16, 3)))
    assert out["features"].shape == (1, model.feature_dim) and out["logits"].shape == (1, 5)


def test_fixed_p_gem_and_old_classifier_name():
    sd = fastreid_state(False, 4, (1, 1, 1, 1), 3, gem=False)
    sd["heads.classifier.weight"] = sd.pop("heads.weight")
    model = fastreid.infer_model(sd, pooling="gem")
    v = fastreid.state_dict_to_variables(sd, model)
    np.testing.assert_array_equal(v["params"]["pool"]["p"], [3.0])
    assert v["params"]["classifier"]["kernel"].shape == (32, 3)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda sd: sd.pop("backbone.layer1.0.bn2.running_var"), "missing 1 tensor"),
        (lambda sd: sd.update({"backbone.extra.weight": np.ones(3)}), "unexpected 1 tensor"),
        (
            lambda sd: sd.update({"backbone.layer1.0.conv1.weight": np.ones((4, 4, 1, 1))}),
            "mis-shaped: backbone.layer1.0.conv1.weight",
        ),
        (lambda sd: sd.update({"backbone.layer1.0.bn1.IN.weight": np.ones(2)}), "IBN-a"),
        (lambda sd: sd.update({"backbone.NL_2.0.g.weight": np.ones(2)}), "non-local"),
        (lambda sd: sd.update({"heads.bottleneck.1.weight": np.ones(2)}), "embedding conv"),
    ],
)
def test_clear_errors(edit, message):
    sd = fastreid_state(False, 4, (1, 1, 1, 1), 3, gem=False)
    model = fastreid.infer_model(sd)
    edit(sd)
    with pytest.raises(fastreid.FastReIDCheckpointError, match=message):
        fastreid.state_dict_to_variables(sd, model)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        fastreid.load_fastreid(tmp_path / "nope.pth")


def torch_fastreid_resnet50(num_classes: int):
    """A PyTorch ResNet-50 re-ID baseline with FastReID's module names (GeM-P, BNNeck)."""
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(planes * 4)
            self.downsample = None
            if stride != 1 or inplanes != planes * 4:
                self.downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                    nn.BatchNorm2d(planes * 4),
                )

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = torch.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            skip = x if self.downsample is None else self.downsample(x)
            return torch.relu(out + skip)

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, ceil_mode=True)  # FastReID v1: no padding
            inplanes = 64
            for s, (blocks, stride) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 1), strict=True)):
                planes = 64 * 2**s
                layer = []
                for i in range(blocks):
                    layer.append(Bottleneck(inplanes, planes, stride if i == 0 else 1))
                    inplanes = planes * 4
                setattr(self, f"layer{s + 1}", nn.Sequential(*layer))

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    class GeMP(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.ones(1) * 3)

        def forward(self, x):
            return x.clamp(min=1e-6).pow(self.p).mean((2, 3), keepdim=True).pow(1.0 / self.p)

    class Heads(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool_layer = GeMP()
            self.bottleneck = nn.Sequential(nn.BatchNorm2d(2048))
            self.weight = nn.Parameter(torch.randn(num_classes, 2048) * 0.01)

        def forward(self, x):
            feat = self.bottleneck(self.pool_layer(x))[..., 0, 0]
            return feat, feat @ self.weight.T

    class Baseline(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer(
                "pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
            )
            self.register_buffer(
                "pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
            )
            self.backbone = Backbone()
            self.heads = Heads()

        def forward(self, images_0_255):
            return self.heads(self.backbone((images_0_255 - self.pixel_mean) / self.pixel_std))

    torch.manual_seed(0)
    model = Baseline()
    with torch.no_grad():  # non-trivial BN statistics and p, so the mapping is really exercised
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        model.heads.bottleneck[0].bias.zero_()
        model.heads.pool_layer.p.fill_(3.3)
    return model.eval()


def test_real_pth_matches_pytorch_forward(tmp_path):
    torch = pytest.importorskip("torch")
    model_t = torch_fastreid_resnet50(num_classes=7)
    path = tmp_path / "model_final.pth"
    torch.save({"model": model_t.state_dict(), "iteration": 10}, path)
    model, variables = fastreid.load_fastreid(path)
    assert model.feature_dim == 2048 and model.pooling == "gem" and model.num_classes == 7
    images = np.random.default_rng(0).random((2, 64, 32, 3)).astype(np.float32)
    with torch.no_grad():
        x = torch.from_numpy(images * 255).permute(0, 3, 1, 2)
        feat_t, logits_t = (t.numpy() for t in model_t(x))
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
    scale = np.abs(feat_t).max()
    np.testing.assert_allclose(np.asarray(out["features"]), feat_t, atol=1e-5 * scale)
    np.testing.assert_allclose(
        np.asarray(out["logits"]), logits_t, atol=1e-5 * np.abs(logits_t).max()
    )


def _tiny_state(**kwargs):
    return fastreid_state(False, 4, (1, 1, 1, 1), 3, gem=True, **kwargs)


def test_a_dataparallel_bfloat16_checkpoint_with_training_state_loads(tmp_path):
    state = _tiny_state()
    tensors = {
        f"module.{k}": v.astype(ml_dtypes.bfloat16 if v.dtype.kind == "f" else np.int64)
        for k, v in state.items()
    }
    tensors["module.heads.weight"] = state["heads.weight"].astype(np.float16)  # mixed precisions
    adam = {"step": np.array(1.0, np.float32), "exp_avg": np.zeros((2, 2), np.float32)}
    optimizer = {  # as torch.optim.Adam(...).state_dict() has it
        "state": {0: adam},
        "param_groups": [{"lr": 0.001, "betas": (0.9, 0.999), "foreach": None, "params": [0]}],
    }
    scheduler = {"milestones": Counter({40: 1, 90: 1}), "gamma": 0.1, "base_lrs": [0.001]}
    path = tmp_path / "model_final.pth"
    write_pth(
        path, {"model": tensors, "optimizer": optimizer, "scheduler": scheduler, "iteration": 5}
    )
    model, variables = fastreid.load_fastreid(path)
    assert (model.width, model.num_classes, model.pooling) == (4, 3, "gem")
    conv = tensors["module.backbone.layer2.0.conv1.weight"].astype(np.float32)
    np.testing.assert_array_equal(
        variables["params"]["backbone"]["layer2_0"]["conv1"]["kernel"], conv.transpose(2, 3, 1, 0)
    )
    head = tensors["module.heads.weight"].astype(np.float32)
    np.testing.assert_array_equal(variables["params"]["classifier"]["kernel"], head.T)


def test_older_head_names_map_onto_the_neck_and_classifier():
    state = _tiny_state()
    for leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        state[f"heads.bnneck.{leaf}"] = state.pop(f"heads.bottleneck.0.{leaf}")
    state["heads.classifier.weight"] = state.pop("heads.weight")
    model = fastreid.infer_model(state)
    variables = fastreid.state_dict_to_variables(state, model)
    np.testing.assert_array_equal(
        variables["batch_stats"]["bottleneck"]["bn"]["mean"], state["heads.bnneck.running_mean"]
    )
    np.testing.assert_array_equal(
        variables["params"]["classifier"]["kernel"], state["heads.classifier.weight"].T
    )


def test_a_resnet101_checkpoint_is_read_with_its_depth():
    state = fastreid_state(True, 2, (3, 4, 23, 3), 3, gem=False)
    model = fastreid.infer_model(state)
    assert tuple(model.stage_sizes) == (3, 4, 23, 3) and model.bottleneck
    variables = fastreid.state_dict_to_variables(state, model)
    np.testing.assert_array_equal(
        variables["params"]["backbone"]["layer3_22"]["conv3"]["kernel"],
        state["backbone.layer3.22.conv3.weight"].transpose(2, 3, 1, 0),
    )


def _grouped(state):
    state["backbone.layer1.0.conv2.weight"] = np.ones((8, 2, 3, 3), np.float32)  # groups of 2


def _deep_stem(state):
    state["backbone.conv1.0.weight"] = state.pop("backbone.conv1.weight")


def _prefixed_non_local(state):
    state["backbone.NL_2.0.g.weight"] = np.ones((2, 2, 1, 1), np.float32)
    for key in list(state):
        state[f"module.{key}"] = state.pop(key)


@pytest.mark.parametrize(
    "edit,message",
    [
        (_grouped, r"grouped convolutions \(ResNeXt\).*backbone.layer1.0.conv2.weight"),
        (_deep_stem, r"no backbone.conv1.weight \(backbone keys: backbone.bn1.bias.*ResNeSt"),
        (_prefixed_non_local, r"non-local blocks .*found backbone.NL_2.0.g.weight"),
    ],
)
def test_unsupported_backbones_are_named(edit, message):
    state = _tiny_state()
    edit(state)
    with pytest.raises(fastreid.FastReIDCheckpointError, match=message):
        fastreid.infer_model(state)


def test_a_pickled_module_is_refused_with_what_to_save_instead(tmp_path):
    path = tmp_path / "whole_model.pth"  # torch.save(nn.Linear(2, 2)) begins so
    write_zip(
        path, {"archive/data.pkl": b"\x80\x02ctorch.nn.modules.linear\nLinear\nq\x00)\x81q\x01."}
    )
    with pytest.raises(
        fastreid.FastReIDCheckpointError,
        match=r"whole_model.pth: holds pickled Python objects \(torch.nn.modules.linear.Linear\)"
        r".*state_dict\(\)",
    ):
        fastreid.load_fastreid(path)


def test_checkpoints_load_without_torch(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    state = _tiny_state()
    path = tmp_path / "model.pth"
    write_pth(path, {"model": state, "iteration": 5})
    model, variables = fastreid.load_fastreid(path)
    np.testing.assert_array_equal(
        variables["params"]["backbone"]["conv1"]["kernel"],
        state["backbone.conv1.weight"].transpose(2, 3, 1, 0),
    )


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", "truncated"])
def test_unreadable_fastreid_checkpoint_is_named(tmp_path, content):
    path = tmp_path / "model_final.pth"
    if content == "truncated":
        write_pth(path, {"model": {"backbone.conv1.weight": np.zeros((4, 3, 7, 7), np.float32)}})
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(fastreid.FastReIDCheckpointError, match="not a readable PyTorch checkpoint"):
        fastreid.load_fastreid(path)
    with pytest.raises(fastreid.FastReIDCheckpointError, match=str(path)):
        fastreid.read_state_dict(path)


def test_fastreid_checkpoints_load_with_fastreid_stem():
    state = fastreid_state(False, 4, (1, 1, 1, 1), 3, gem=False)
    assert fastreid.infer_model(state).stem_pool == "ceil"
    assert fastreid.infer_model(state, stem_pool="pad").stem_pool == "pad"
    tiny = get_config("cpu-tiny")
    assert tiny.build().stem_pool == "pad"  # invfeat's own victims keep torchvision's stem


def test_the_scoring_api_resizes_to_the_victims_test_size(tmp_path):
    """A FastReID victim tests at its INPUT.SIZE_TEST: the reconstructions (the attack's size)
    are resized to it, bicubic, before the model sees them."""
    import jax

    from invfeat.models.reid import make_features_fn
    from invfeat.victims.from_files import FileVictim, victim_api

    path = tmp_path / "model.pth"
    write_pth(path, {"model": _tiny_state()})
    images = np.random.default_rng(0).random((3, 48, 16, 3)).astype(np.float32)
    victim = FileVictim("v", image_size=(48, 16), weights=str(path), test_size=(32, 16))
    model, variables = fastreid.load_fastreid(path)
    resized = np.clip(jax.image.resize(images, (3, 32, 16, 3), "cubic"), 0, 1)
    expected = make_features_fn(model)(variables, resized)
    np.testing.assert_allclose(victim_api(victim, batch_size=4)(images), expected, atol=1e-5)
    as_is = victim_api(FileVictim("v", image_size=(48, 16), weights=str(path)), batch_size=4)
    assert not np.allclose(as_is(images), expected, atol=1e-3)
