"""Write `pth_fixture.pth` (a torch.save checkpoint) and `pth_fixture.npz` (its tensors as numpy
arrays, bfloat16 as float32) beside this script, for tests/test_models_pth.py.

The checkpoint is laid out like FastReID's ({"model": OrderedDict, "iteration": ...}) and holds
float32, float16, bfloat16 and int64 tensors, a Parameter, a scalar, an empty tensor and views
that share one storage at an offset and with non-contiguous strides. Needs torch, which the
project's venv does not have; run it once from a throwaway venv:

    python3.11 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install numpy torch --index-url https://download.pytorch.org/whl/cpu
    /tmp/torchenv/bin/python tests/data/make_pth_fixture.py
"""

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent


def main() -> None:
    torch.manual_seed(0)
    weight = torch.randn(3, 4)
    model = OrderedDict()
    model["fc.weight"] = weight
    model["fc.weight_t"] = weight.t()  # stride (1, 4) on weight's storage
    model["fc.slice"] = weight[1:, ::2]  # offset 4, stride (4, 2) on weight's storage
    model["conv.weight"] = torch.nn.Parameter(torch.randn(2, 1, 2, 2))
    model["bn.running_mean"] = torch.randn(3).half()
    model["bn.num_batches_tracked"] = torch.tensor(7)
    model["idx"] = torch.arange(6).view(2, 3)[:, 1:]
    model["heads.weight"] = torch.randn(2, 3).to(torch.bfloat16)
    model["empty"] = torch.zeros(0, 3)
    checkpoint = {
        "model": model,
        "iteration": 5,
        "meta": {"names": ["a", "b"], "lr": 0.1, "flags": (True, None)},
    }
    torch.save(checkpoint, HERE / "pth_fixture.pth")
    expected = {
        f"model/{k}": (v.detach().float() if v.dtype == torch.bfloat16 else v.detach()).numpy()
        for k, v in model.items()
    }
    np.savez(HERE / "pth_fixture.npz", **expected)


if __name__ == "__main__":
    main()
