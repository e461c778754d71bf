"""Running a study (invfeat/study/run.py), mostly through `python -m experiments run`: the `tiny`
configuration end to end writes a complete report; a killed run resumes where it stopped, and so
does a moved run folder; another configuration or other data in a run folder are refused, and
weights files are read before the run starts; the same study on a victim given as feature files
is scored through files written outside."""

import argparse
import dataclasses
import json

import cv2
import numpy as np
import pytest
from helpers.worlds import TINY_STUDY, TINY_STUDY_DATA, tiny_study_names

from experiments.__main__ import main
from experiments.configs import STUDIES, get_study
from experiments.study import PENDING_EXIT, with_paths
from invfeat.data.datasets import SPLITS
from invfeat.data.feature_files import FeatureFile, read_features, write_features
from invfeat.study import report
from invfeat.study.run import run_study
from invfeat.victims import load_victim
from invfeat.victims.from_files import FileVictim

PROTECTED = (
    "inversion",
    "attributes_estimate",
    "attributes_popcount",
    "linkability",
    "autoencoder",
    "gan",
    "legitimate",
)
STAGES = (
    "data", "victim", "victim_eval", "features", "attributes_plain", "surrogate",
    "autoencoder_plain", "gan_plain", "optimisation_plain", "linkability_plain",
    *(f"protections/{mode}/{stage}" for mode in ("static", "one-time", "stream") for stage in PROTECTED),
)  # fmt: skip
RECONSTRUCTIONS = (
    "autoencoder_plain", "gan_plain", "optimisation_plain",
    *(f"protections/{mode}/{kind}" for mode in ("static", "one-time", "stream") for kind in ("autoencoder", "gan")),
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
    for block in (
        results["reconstruction"],
        results["protections"]["one-time"]["reconstruction"]["attacks"],
    ):
        for method in ("autoencoder", "gan"):
            assert set(report.RECONSTRUCTION_METRICS) <= set(block[method])
            assert np.isfinite([block[method][m] for m in report.RECONSTRUCTION_METRICS]).all()
    optimisation = results["reconstruction"]["optimisation"]  # beside the decoders
    assert optimisation["kind"] == "optimisation" and optimisation["threat_model_allowed"]
    assert optimisation["init"] == "given"  # tiny refines the GAN's reconstructions
    starts = np.load(run / "gan_plain" / "queries.npy") / 255.0
    assert starts.shape[0] == optimisation["num_queries"]
    refined = np.load(run / "optimisation_plain" / "grid.npy")
    # 4 Adam steps at 0.01 move a pixel by at most about 0.04 from where it started
    assert 1e-3 < np.abs(refined - starts[: len(refined)]).max() < 0.05
    assert np.isfinite([optimisation[m] for m in report.RECONSTRUCTION_METRICS]).all()
    assert "| optimisation, refining the GAN's |" in (run / "report.md").read_text()
    names = set(results["attributes"]) - {"mean"}
    assert {"gender", "up_colour", "down_colour"} <= names
    assert set(results["protections"]) == {"static", "one-time", "stream"}
    for mode, cells in results["protections"].items():
        assert set(cells) >= {"attributes", "reconstruction", "linkability", "irreversibility"}
        assert ("key_recovery" in cells) == (mode == "static")
        assert list(cells["attributes"]["readings"]) == ["estimate", "popcount"]
        for block in cells["attributes"]["readings"].values():
            assert set(block) - {"mean"} == names
        assert cells["reconstruction"]["reading"] in ("estimate", "popcount")
        for cell in (cells[k] for k in ("attributes", "reconstruction", "linkability")):
            assert cell["leaks"] == any(t["leaks"] for t in cell["tests"])
            assert all(t["low"] <= t["value"] <= t["high"] for t in cell["tests"])
        # The key holder's re-ID after decryption equals the plaintext figures exactly.
        assert cells["legitimate"]["bit_exact"] is True
        assert cells["legitimate"]["rank1"] == results["victim"]["rank1"]
        assert cells["legitimate"]["mAP"] == results["victim"]["mAP"]
        key = run / "features" / "keys" / f"{mode}.json"
        assert key.stat().st_mode & 0o777 == 0o600
    assert set(results["reference"]) == {"attributes", "reconstruction", "linkability"}
    # Counts of ones are the same under any bit permutation: one head serves both key modes.
    popcount = json.loads(
        (run / "protections/one-time/attributes_popcount/timing.json").read_text()
    )
    assert popcount["same_as"] == "protections/static/attributes_popcount"
    assert 0 < results["chance"]["rank1"] < 1
    text = (run / "report.md").read_text()
    assert "## What each protection hides" in text and "**Optimistic:**" in text
    for png in ("security.png", "attributes.png", "reconstructions.png", "curves.png"):
        assert (run / png).stat().st_size > 0


def test_a_killed_study_resumes_where_it_stopped(tiny_run, capsys):
    root, argv = tiny_run
    run = root / "runs" / "tiny"
    before = json.loads((run / "report.json").read_text())
    (run / "protections/stream/gan/result.json").unlink()  # as if killed in the last stage
    (run / "report.json").unlink()
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[victim] done earlier" in err and "[gan_plain] done earlier" in err
    assert "[features] done earlier" in err and "[surrogate] done earlier" in err
    assert "[protections/stream/gan] finished" in err
    after = json.loads((run / "report.json").read_text())
    for key in ("victim", "attributes", "reconstruction", "reference"):
        assert after[key] == before[key]
    for mode in ("static", "one-time"):
        assert after["protections"][mode] == before["protections"][mode]


def test_another_config_in_the_same_run_dir_is_refused(tiny_run):
    root, _ = tiny_run
    other = get_study("tiny").replace_nested(grid_images=2)
    with pytest.raises(ValueError, match="another configuration"):
        run_study(other, root / "runs" / "tiny", data_dir=root / "data", progress=False)


def test_a_moved_run_folder_resumes_with_relative_paths_and_another_data_dir(
    tiny_run, tmp_path, monkeypatch
):
    """Nothing in a run folder depends on where it lies, and a data dir without the data is
    built again (the synthetic world renders the same records), not an error."""
    import shutil

    root, _ = tiny_run
    shutil.copytree(root / "runs" / "tiny", tmp_path / "moved" / "tiny")
    before = json.loads((tmp_path / "moved" / "tiny" / "report.json").read_text())
    monkeypatch.chdir(tmp_path)
    argv = ["run", "tiny", "--runs-dir", "moved", "--data-dir", "data2", "--quiet"]
    assert main(argv) == 0
    after = json.loads((tmp_path / "moved" / "tiny" / "report.json").read_text())
    assert {k: v for k, v in after.items() if k != "timings"} == {
        k: v for k, v in before.items() if k != "timings"
    }
    assert (tmp_path / "data2" / "synth_market").is_dir()


def _as_written_elsewhere(src, dst, root):
    """A feature file as another machine writes it: absolute paths, rows in another order."""
    ff = read_features(src)
    order = np.random.default_rng(0).permutation(len(ff))
    paths = np.asarray([f"{root}/{p}" for p in ff.paths[order]])
    write_features(dst, FeatureFile(paths, ff.features[order]))


def test_a_feature_file_victim_is_attacked_and_scored_through_files(
    tiny_run, tmp_path, monkeypatch, capsys
):
    """FastReID-layout files of the tiny victim stand in for FastReID's: the study reads them,
    waits for the victim's features of the reconstructions, then reports what the trained
    victim's study reported (same features in, same attacks out)."""
    root, _ = tiny_run
    tiny_dir = root / "runs" / "tiny"
    tiny = json.loads((tiny_dir / "report.json").read_text())
    files = tmp_path / "fastreid"
    files.mkdir()
    for split in ("train", "query", "gallery"):
        src = tiny_dir / "features" / f"plain_{split}.npz"
        _as_written_elsewhere(src, files / f"{split}.npz", "/datasets/synth_market")
    base = get_study("tiny")
    victim = FileVictim(name="tiny-as-files", image_size=base.victim.input_size)
    monkeypatch.setitem(
        STUDIES, "tiny-files", dataclasses.replace(base, name="tiny-files", victim=victim)
    )
    argv = [
        "run",
        "tiny-files",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--data-dir",
        str(root / "data"),
    ]
    argv += ["--victim-features", str(files), "--quiet"]

    capsys.readouterr()
    assert main(argv) == PENDING_EXIT
    out = capsys.readouterr().out
    external = tmp_path / "runs" / "tiny-files" / "external"
    stages = [stage for stage in RECONSTRUCTIONS if str(external / stage) in out]
    assert stages[:3] == ["autoencoder_plain", "gan_plain", "optimisation_plain"]
    api = load_victim(tiny_dir / "victim").api(batch_size=32)
    for stage in stages:  # the victim's own extractor, run outside the study
        names = sorted((external / stage).rglob("*.png"))
        assert len(names) == tiny["reconstruction"]["gan"]["num_queries"]
        images = np.stack([cv2.cvtColor(cv2.imread(str(n)), cv2.COLOR_BGR2RGB) for n in names])
        paths = np.asarray([f"/elsewhere/{n.relative_to(external)}" for n in names])
        write_features(external / f"{stage}.npz", FeatureFile(paths, api(images)))
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "step/s" not in err and "s/step" not in err  # --quiet: no progress bars

    results = json.loads((tmp_path / "runs" / "tiny-files" / "report.json").read_text())
    report.check_results(results)
    assert results["victim"]["source"] == "tiny-as-files"
    for key in ("rank1", "mAP"):
        assert results["victim"][key] == tiny["victim"][key]
        for mode, cells in results["protections"].items():
            assert cells["legitimate"][key] == tiny["protections"][mode]["legitimate"][key]
    assert results["attributes"] == tiny["attributes"]
    for method in ("autoencoder", "gan"):
        ours, theirs = results["reconstruction"][method], tiny["reconstruction"][method]
        assert ours["psnr"] == theirs["psnr"] and ours["ssim"] == theirs["ssim"]
        # Only the 8-bit PNG round trip separates the two scorings.
        assert ours["cosine_distance"] == pytest.approx(theirs["cosine_distance"], abs=0.01)


def test_a_study_as_published_reconstructs_and_validates_on_query_and_gallery(
    tiny_run, tmp_path, monkeypatch, capsys
):
    """The published choices the paper-* studies make (reconstructed_splits query and gallery,
    the autoencoder's best validation epoch) on the feature-file victim: every query and gallery
    image goes out for the victim's features and comes back scored."""
    root, _ = tiny_run
    tiny_dir = root / "runs" / "tiny"
    files = tmp_path / "fastreid"
    files.mkdir()
    counts = {}
    for split in ("train", "query", "gallery"):
        src = tiny_dir / "features" / f"plain_{split}.npz"
        counts[split] = len(read_features(src))
        _as_written_elsewhere(src, files / f"{split}.npz", "/datasets/synth_market")
    base = get_study("tiny")
    published = dataclasses.replace(
        base,
        name="tiny-published",
        victim=FileVictim(name="tiny-as-files", image_size=base.victim.input_size),
        autoencoder=dataclasses.replace(base.autoencoder, keep_best=True),
        reconstructed_splits=("query", "gallery"),
        protections=(),
    )
    monkeypatch.setitem(STUDIES, "tiny-published", published)
    argv = ["run", "tiny-published", "--runs-dir", str(tmp_path / "runs")]
    argv += ["--data-dir", str(root / "data"), "--victim-features", str(files), "--quiet"]
    assert main(argv) == PENDING_EXIT
    external = tmp_path / "runs" / "tiny-published" / "external"
    api = load_victim(tiny_dir / "victim").api(batch_size=32)
    for stage in ("autoencoder_plain", "gan_plain", "optimisation_plain"):
        names = sorted((external / stage).rglob("*.png"))
        # the decoders reconstruct both splits; the optimisation inverts the queries
        both = stage != "optimisation_plain"
        assert len(names) == counts["query"] + both * counts["gallery"]
        images = np.stack([cv2.cvtColor(cv2.imread(str(n)), cv2.COLOR_BGR2RGB) for n in names])
        paths = np.asarray([f"/elsewhere/{n.relative_to(external)}" for n in names])
        write_features(external / f"{stage}.npz", FeatureFile(paths, api(images)))
    assert main(argv) == 0
    results = json.loads((tmp_path / "runs" / "tiny-published" / "report.json").read_text())
    for method in ("autoencoder", "gan"):
        scores = results["reconstruction"][method]
        assert scores["reconstructed"] == {"query": counts["query"], "gallery": counts["gallery"]}
        assert scores["num_queries"] == counts["query"]
    log = tmp_path / "runs" / "tiny-published" / "autoencoder_plain" / "metrics.jsonl"
    epochs = [json.loads(line) for line in log.read_text().splitlines()]
    assert any("validation/pixel_mse" in r for r in epochs if r["kind"] == "epoch")


def test_file_victim_weights_give_the_scoring_api(tiny_run, tmp_path):
    from invfeat.victims.from_files import victim_api

    root, _ = tiny_run
    folder = root / "runs" / "tiny" / "victim"
    assert victim_api(FileVictim("no-weights")) is None
    images = np.random.default_rng(0).random((3, *get_study("tiny").victim.input_size, 3))
    api = victim_api(FileVictim("ours", weights=str(folder)), batch_size=8)
    expected = load_victim(folder).api(batch_size=8)(images)
    np.testing.assert_array_equal(api(images), expected)
    (tmp_path / "model.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match="FastReID .pth file or an invfeat victim folder"):
        victim_api(FileVictim("bad", weights=str(tmp_path / "model.ckpt")))


@pytest.mark.parametrize("bad", ["perceptual", "victim"])
def test_weights_files_are_read_before_the_run_starts(tmp_path, bad):
    """The GAN's perceptual weights and the scoring victim's weights are first needed hours in:
    a file that does not load is refused before the run directory exists."""
    features = tmp_path / "features"
    features.mkdir()
    for split in ("train", "query", "gallery"):
        (features / f"{split}.npz").write_bytes(b"")
    junk = tmp_path / ("resnet50.h5" if bad == "perceptual" else "model.ckpt")
    junk.write_text("not weights")
    args = argparse.Namespace(
        victim_features=features,
        victim_weights=junk if bad == "victim" else None,
        perceptual_weights=junk if bad == "perceptual" else None,
    )
    config = with_paths(get_study("paper-market-bot"), args)
    if bad == "victim":  # the config needs its perceptual weights too: give a real-looking path
        config = dataclasses.replace(
            config, gan=dataclasses.replace(config.gan, perceptual="victim-surrogate")
        )
    with pytest.raises((OSError, ValueError), match=str(junk.name)):
        run_study(config, tmp_path / "run", data_dir=tmp_path / "data")
    assert not (tmp_path / "run").exists()


def test_a_run_begun_on_data_of_other_sizes_is_refused(tiny_study_data_dir, tmp_path):
    config = TINY_STUDY.replace_nested(
        victim={"dataset": "synth_market", "data_settings": TINY_STUDY_DATA}
    )
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    report.write_json(config.to_dict(), run / "config.json")
    sizes = {split: len(tiny_study_names(tiny_study_data_dir, split)) + 1 for split in SPLITS}
    record = {"seconds": 1.0, "result": {"synth_market": sizes}}
    (run / "data" / "result.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="made from other data"):
        run_study(config, run, data_dir=tiny_study_data_dir, progress=False)
    assert not (run / "victim").exists()


def test_a_study_over_seeds_summarises_each_seeds_run(tiny_run, tmp_path, capsys):
    """`--seeds`: one run per seed (seed 0's is the tiny study itself, so a copy of its folder
    resumes there), then one report of every figure's spread and every cell's verdict count."""
    import shutil

    root, _ = tiny_run
    shutil.copytree(root / "runs" / "tiny", tmp_path / "runs" / "tiny-seed0")
    argv = ["run", "tiny", "--seeds", "0", "--runs-dir", str(tmp_path / "runs")]
    capsys.readouterr()
    assert main([*argv, "--data-dir", str(root / "data"), "--quiet"]) == 0
    assert "## Verdicts: in how many seeds each cell leaks" in capsys.readouterr().out
    tiny = json.loads((root / "runs" / "tiny" / "report.json").read_text())
    summary = json.loads((tmp_path / "runs" / "tiny-seeds" / "report.json").read_text())
    assert summary["seeds"] == [0]
    gan = summary["figures"]["plaintext / reconstruction / gan: rank-1"]
    assert gan["values"] == [tiny["reconstruction"]["gan"]["rank1"]] and gan["sd"] == 0.0
    leaks = tiny["protections"]["one-time"]["irreversibility"]["leaks"]
    assert summary["verdicts"]["one-time / irreversibility"] == {"leaks": int(leaks), "of": 1}


@pytest.mark.parametrize("seeds", ["0,x", "1,1", "-1"])
def test_bad_seeds_are_a_usage_error(seeds, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "tiny", "--seeds", seeds])
    assert exit_info.value.code == 2
    assert "--seeds" in capsys.readouterr().err
