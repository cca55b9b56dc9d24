"""Suite excerpts (``--save-excerpt`` / ``--excerpt``): same measurements and scores without the source data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medrecon.benchmark import load_suite
from medrecon.benchmark.data import data_root, dataset_source, load_cases
from medrecon.benchmark.excerpt import read_excerpt, save_excerpt
from medrecon.cli import main as cli_main
from medrecon.errors import InputError


def _assert_same_cases(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.volume == y.volume and x.slices == y.slices
        assert np.array_equal(x.target, y.target)
        for k in ("kspace", "mask", "sinogram"):
            u, v = getattr(x, k), getattr(y, k)
            assert (u is None and v is None) or np.array_equal(u, v), k
        assert x.info == y.info


def test_excerpt_gives_bit_identical_cases_for_every_split(tmp_path):
    suite = load_suite("smoke")
    root = data_root(suite, None)
    meta = save_excerpt(suite, root, tmp_path / "smoke.npz")
    assert set(meta["datasets"]) == {"smoke-mri", "smoke-ct"}
    assert oct((tmp_path / "smoke.npz").stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode
    ex = read_excerpt(tmp_path / "smoke.npz", suite)
    for ds in suite.datasets:
        for split in ("test", "tuning"):
            from_file = load_cases(suite, ds, dataset_source(suite, ds, root), split)
            from_excerpt = load_cases(suite, ds, dataset_source(suite, ds, None, ex), split)
            _assert_same_cases(from_file, from_excerpt)


def test_cli_runs_a_suite_from_its_excerpt_alone_with_the_same_scores(tmp_path, suite_json, write_manifest):
    npz = tmp_path / "smoke.npz"
    assert cli_main(["benchmark", "--suite", "smoke", "--save-excerpt", str(npz)]) == 0
    # The data folder of this copy does not exist: everything must come from the excerpt.
    nowhere = write_manifest(suite_json("smoke"), root=tmp_path / "nowhere")
    common = ["--methods", "zero-filled,fbp", "--device", "cpu", "--no-figures", "--quiet"]
    assert cli_main(["benchmark", "--suite", str(nowhere), "--excerpt", str(npz), *common,
                     "--out", str(tmp_path / "a")]) == 0
    assert cli_main(["benchmark", "--suite", "smoke", *common, "--out", str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    key = [(r["dataset"], r["method"], r["psnr"], r["ssim"], r["nmse"]) for r in a["rows"]]
    assert key == [(r["dataset"], r["method"], r["psnr"], r["ssim"], r["nmse"]) for r in b["rows"]]
    assert a["excerpt"]["file"] == "smoke.npz" and len(a["excerpt"]["sha256"]) == 64 and b["excerpt"] is None
    assert "--excerpt" in a["command"]


def test_one_excerpt_serves_suites_reading_the_same_slices(tmp_path, suite_json, write_manifest):
    doc = suite_json("smoke")
    save_excerpt(load_suite(write_manifest(doc)), data_root(load_suite("smoke"), None), tmp_path / "e.npz")
    twin = suite_json("smoke")
    twin["name"] = "twin"
    for ds in twin["datasets"]:
        ds["name"] += "-twin"  # other dataset names, same files and slices
    ex = read_excerpt(tmp_path / "e.npz", load_suite(write_manifest(twin, "twin.json")))
    assert set(ex) == {"smoke-mri-twin", "smoke-ct-twin"}


def test_excerpt_errors_are_one_line(tmp_path, suite_json, write_manifest, capfd):
    suite = load_suite("smoke")
    npz = tmp_path / "smoke.npz"
    save_excerpt(suite, data_root(suite, None), npz)
    other = suite_json("smoke")
    for ds in other["datasets"]:
        ds["file"]["sha256"] = "0" * 64  # same file names, other data
    with pytest.raises(InputError, match="holds none of the data of suite smoke"):
        read_excerpt(npz, load_suite(write_manifest(other, "other.json")))
    # An excerpt that lost slice 1 of the MRI dataset (rewritten by hand) cannot serve the suite.
    with np.load(npz) as z:
        meta, arrays = json.loads(str(z["meta"])), {k: z[k] for k in z.files if k != "meta"}
    meta["datasets"]["smoke-mri"]["slices"] = [0]
    arrays["smoke-mri"] = arrays["smoke-mri"][:1]
    np.savez_compressed(tmp_path / "short.npz", meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(InputError, match=r"holds slices \[0\] of mri_t1_vsseg001_2slices.nii.gz, but suite smoke "
                                         r"needs \[0, 1\]"):
        read_excerpt(tmp_path / "short.npz", suite)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    code = cli_main(["benchmark", "--suite", "smoke", "--excerpt", str(tmp_path / "junk.npz"), "--out",
                     str(tmp_path / "o")])
    _, err = capfd.readouterr()
    assert code == 2 and err.count("\n") == 1 and "junk.npz: not a readable medrecon excerpt" in err
    assert not (tmp_path / "o" / "results.json").exists()
    code = cli_main(["benchmark", "--suite", "smoke", "--device", "cpu"])
    _, err = capfd.readouterr()
    assert code == 2 and "--out is required" in err


def test_prior_override_parsing(tmp_path, capfd):
    code = cli_main(["benchmark", "--suite", "smoke", "--prior", "pet=x", "--out", str(tmp_path / "o")])
    _, err = capfd.readouterr()
    assert code == 2 and "--prior 'pet=x': expected mri=NAME_OR_FOLDER" in err


@pytest.mark.data
def test_ct_60_excerpt_matches_the_held_out_series(tmp_path):
    suite = load_suite("ct-60")
    root = data_root(suite, None)
    save_excerpt(suite, root, tmp_path / "ct.npz")
    assert (tmp_path / "ct.npz").stat().st_size < 2 * 2 ** 20  # 6 slices of 512x512, int16, compressed
    ex = read_excerpt(tmp_path / "ct.npz", suite)
    ds = suite.datasets[0]
    _assert_same_cases(load_cases(suite, ds, dataset_source(suite, ds, root), "test"),
                       load_cases(suite, ds, dataset_source(suite, ds, None, ex), "test"))
