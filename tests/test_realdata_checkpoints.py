"""FastReID .pth checkpoints as users have them: DataParallel prefixes, optimizer and scheduler
state beside the model, half and bfloat16 tensors, older head names, other depths; and the
backbones that are refused, each named."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from test_fastreid import fastreid_state

from invfeat.models import fastreid


def _tiny_state(**kwargs):
    return fastreid_state(False, 4, (1, 1, 1, 1), 3, gem=True, **kwargs)


def test_a_dataparallel_bfloat16_checkpoint_with_training_state_loads(tmp_path):
    torch = pytest.importorskip("torch")
    state = _tiny_state()
    tensors = {
        f"module.{k}": torch.from_numpy(np.asarray(v)).to(
            torch.bfloat16 if np.asarray(v).dtype.kind == "f" else torch.int64
        )
        for k, v in state.items()
    }
    tensors["module.heads.weight"] = tensors["module.heads.weight"].half()  # mixed precisions
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(layer.parameters())
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [40, 90])
    path = tmp_path / "model_final.pth"
    torch.save(
        {
            "model": tensors,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "iteration": 5,
        },
        path,
    )
    model, variables = fastreid.load_fastreid(path)
    assert (model.width, model.num_classes, model.pooling) == (4, 3, "gem")
    conv = tensors["module.backbone.layer2.0.conv1.weight"].float().numpy()
    np.testing.assert_array_equal(
        variables["params"]["backbone"]["layer2_0"]["conv1"]["kernel"], conv.transpose(2, 3, 1, 0)
    )
    head = tensors["module.heads.weight"].float().numpy()
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
    torch = pytest.importorskip("torch")
    path = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    with pytest.raises(
        fastreid.FastReIDCheckpointError,
        match=r"whole_model.pth: holds pickled Python objects \(torch.nn.modules.linear.Linear\)"
        r".*state_dict\(\)",
    ):
        fastreid.load_fastreid(path)


def test_without_torch_the_error_names_the_file_and_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(
        ImportError, match=r"model.pth needs PyTorch: pip install 'invfeat\[torch\]'"
    ):
        fastreid.load_fastreid(tmp_path / "model.pth")


def _write_h5(path, layers):
    """A Keras 2 `save_weights` file: root attrs layer_names, per layer weight_names."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in layers]
        for name, weights in layers.items():
            group = f.create_group(name)
            group.attrs["weight_names"] = [f"{name}/{w}".encode() for w in weights]
            for w, array in weights.items():
                group.create_dataset(f"{name}/{w}", data=array)
    return path


def _conv1_layers(rng):
    ones = np.ones(64, np.float32)
    return {
        "conv1_conv": {
            "kernel:0": rng.normal(0, 0.1, (7, 7, 3, 64)).astype(np.float32),
            "bias:0": np.zeros(64, np.float32),
        },
        "conv1_bn": {
            "gamma:0": ones,
            "beta:0": 0 * ones,
            "moving_mean:0": 0 * ones,
            "moving_variance:0": ones,
        },
    }


def test_keras_top_file_loads_and_another_network_is_refused_by_its_layers(tmp_path):
    from invfeat.models.keras_h5 import KerasWeightsError
    from invfeat.models.perceptual import make_perceptual

    rng = np.random.default_rng(0)
    top = _conv1_layers(rng) | {
        "avg_pool": {},
        "predictions": {"kernel:0": np.zeros((2048, 1000), np.float32)},  # include_top=True
    }
    path = _write_h5(tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5", top)
    perceptual = make_perceptual("resnet50-imagenet", weights_path=path, output_layer="conv1_relu")
    np.testing.assert_array_equal(
        perceptual.variables["params"]["conv1_conv"]["kernel"], top["conv1_conv"]["kernel:0"]
    )
    vgg = {f"block1_conv{i}": {"kernel:0": np.zeros((3, 3, 3, 64), np.float32)} for i in (1, 2)}
    path = _write_h5(tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", vgg)
    expected = (
        r"vgg16.*: 2 of the 2 layers .* \(conv1_bn, conv1_conv\); "
        r"the file has the layers block1_conv1, block1_conv2: weights of another network\?"
    )
    with pytest.raises(ValueError, match=expected) as error:
        make_perceptual("resnet50-imagenet", weights_path=path, output_layer="conv1_relu")
    assert isinstance(error.value, KerasWeightsError) and isinstance(error.value, KeyError)
    assert not str(error.value).startswith("'")
