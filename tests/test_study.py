"""The study end to end on the `tiny` configuration: a complete report, and a resumed run."""

import json

import numpy as np
import pytest

from experiments.__main__ import main
from experiments.configs import STUDIES, get_study
from invfeat import report

STAGES = (
    "data", "victim", "victim_eval", "legitimate", "attributes_plain", "attributes_cipher",
    "surrogate", "autoencoder_plain", "gan_plain", "autoencoder_cipher", "gan_cipher",
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    argv = ["run", "tiny", "--runs-dir", str(root / "runs"), "--data-dir", str(root / "data")]
    assert main(argv) == 0
    return root, argv


def test_tiny_study_writes_a_complete_report(tiny_run):
    root, _ = tiny_run
    run = root / "runs" / "tiny"
    results = json.loads((run / "report.json").read_text())
    report.check_results(results)
    assert set(results["timings"]) == set(STAGES)
    for block in (results["reconstruction"], results["encrypted"]["reconstruction"]):
        for method in ("autoencoder", "gan"):
            assert set(report.RECONSTRUCTION_METRICS) <= set(block[method])
            assert np.isfinite([block[method][m] for m in report.RECONSTRUCTION_METRICS]).all()
    names = set(results["attributes"]) - {"mean"}
    assert {"gender", "up_colour", "down_colour"} <= names
    assert set(results["encrypted"]["attributes"]) - {"mean"} == names
    # The key holder's re-ID after decryption equals the plaintext figures exactly.
    assert results["legitimate"]["bit_exact"] is True
    assert results["legitimate"]["rank1"] == results["victim"]["rank1"]
    assert results["legitimate"]["mAP"] == results["victim"]["mAP"]
    for png in ("attributes.png", "reconstructions.png", "curves.png"):
        assert (run / png).stat().st_size > 0
    secret = run / "features" / "one_time_secret.json"
    assert secret.stat().st_mode & 0o777 == 0o600


def test_a_killed_study_resumes_where_it_stopped(tiny_run, capsys):
    root, argv = tiny_run
    run = root / "runs" / "tiny"
    before = json.loads((run / "report.json").read_text())
    (run / "gan_cipher" / "result.json").unlink()  # as if killed during the last stage
    (run / "report.json").unlink()
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[victim] done earlier" in err and "[gan_plain] done earlier" in err
    assert "[gan_cipher] finished" in err
    after = json.loads((run / "report.json").read_text())
    for key in ("victim", "attributes", "reconstruction", "legitimate"):
        assert after[key] == before[key]
    assert after["encrypted"]["attributes"] == before["encrypted"]["attributes"]


def test_another_config_in_the_same_run_dir_is_refused(tiny_run):
    from invfeat.study import run_study

    root, _ = tiny_run
    other = get_study("tiny").replace_nested(grid_images=2)
    with pytest.raises(ValueError, match="another configuration"):
        run_study(other, root / "runs" / "tiny", data_dir=root / "data", progress=False)


def test_list_names_every_study(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in STUDIES)
