"""--tune on the tuning split and --params reuse (classical methods only, so it runs in seconds)."""

from __future__ import annotations

import json

import pytest

from medrecon.cli import main as cli_main


@pytest.fixture
def ct_tv_suite(suite_json, write_manifest):
    doc = suite_json("smoke")
    ct = doc["datasets"][1]
    ct["methods"] = {"fbp": {}, "cs-tv": {"lam": 0.01, "iters": 5}}
    ct["tuning_grid"] = {"cs-tv": {"lam": [0.001, 0.3]}}
    doc["datasets"] = [ct]
    return write_manifest(doc)


def test_tune_writes_tuned_json_from_the_tuning_split_and_params_reuses_it(ct_tv_suite, tmp_path, capfd):
    out = tmp_path / "tuned"
    assert cli_main(["benchmark", "--suite", str(ct_tv_suite), "--device", "cpu", "--tune", "--no-figures",
                     "--out", str(out)]) == 0
    stdout, _ = capfd.readouterr()
    tuned = json.loads((out / "tuned.json").read_text())
    assert tuned["split"] == "tuning" and tuned["suite"] == "smoke"
    grid = tuned["grid"]["smoke-ct"]["cs-tv"]
    assert [g["lam"] for g in grid] == [0.001, 0.3]
    best = max(grid, key=lambda g: g["psnr"])["lam"]
    assert tuned["params"] == {"smoke-ct": {"cs-tv": {"lam": best}}}
    assert "tuning split" in stdout and "[1/4]" in stdout and "[4/4]" in stdout
    res = json.loads((out / "results.json").read_text())
    tv = next(r for r in res["rows"] if r["method"] == "cs-tv")
    assert tv["params"]["lam"] == best and "tuned" in res["params_source"]
    # Reuse on a later test run.
    out2 = tmp_path / "reuse"
    assert cli_main(["benchmark", "--suite", str(ct_tv_suite), "--device", "cpu", "--no-figures",
                     "--params", str(out / "tuned.json"), "--methods", "cs-tv", "--out", str(out2)]) == 0
    res2 = json.loads((out2 / "results.json").read_text())
    assert res2["rows"][0]["params"]["lam"] == best and res2["rows"][0]["psnr"] == pytest.approx(tv["psnr"])


def test_params_file_errors_are_one_line(ct_tv_suite, tmp_path, capfd):
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"format": "medrecon-tuned/1", "params": {"other": {}}}))
    code = cli_main(["benchmark", "--suite", str(ct_tv_suite), "--device", "cpu", "--params", str(bad),
                     "--out", str(tmp_path / "o")])
    _, err = capfd.readouterr()
    assert code == 2 and "holds settings for other, but suite smoke has smoke-ct" in err and err.count("\n") == 1


def test_unknown_method_and_tune_only_without_tune(ct_tv_suite, tmp_path, capfd):
    assert cli_main(["benchmark", "--suite", str(ct_tv_suite), "--methods", "unet", "--out", str(tmp_path)]) == 2
    assert "unknown method(s) unet" in capfd.readouterr()[1]
    assert cli_main(["benchmark", "--suite", str(ct_tv_suite), "--tune-only", "--out", str(tmp_path)]) == 2
    assert "--tune-only needs --tune" in capfd.readouterr()[1]


def test_a_failing_method_is_recorded_and_the_others_still_run(suite_json, write_manifest, tmp_path, capfd):
    doc = suite_json("smoke")
    mri = doc["datasets"][0]
    mri["acquisition"]["center_fraction"] = 0.02  # 3 calibration lines: ESPIRiT (sense) refuses, zero-filled runs
    mri["methods"] = {"zero-filled": {}, "sense": {"iters": 5}}
    mri["tuning_grid"] = {}
    doc["datasets"] = [mri]
    out = tmp_path / "o"
    assert cli_main(["benchmark", "--suite", str(write_manifest(doc)), "--device", "cpu", "--no-figures",
                     "--out", str(out)]) == 1
    stdout, _ = capfd.readouterr()
    rows = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["zero-filled"]["psnr"] > 10 and "error" not in rows["zero-filled"]
    assert "calibration" in rows["sense"]["error"] or "central lines" in rows["sense"]["error"]
    assert rows["sense"]["psnr"] is None
    assert "| sense | failed:" in (out / "report.md").read_text()
    assert "1 method(s) failed: smoke-mri/sense" in stdout


def test_several_params_files_merge_and_a_method_set_twice_is_refused(tmp_path):
    """--params A B: the classical weights of one tuning run and the fast sampler's settings of another."""
    from medrecon.benchmark.manifest import load_suite
    from medrecon.benchmark.params import read_params_files
    from medrecon.errors import InputError

    suite = load_suite("smoke")

    def tuned(name, params):
        p = tmp_path / name
        p.write_text(json.dumps({"format": "medrecon-tuned/1", "params": params}))
        return p

    a = tuned("classical.json", {"smoke-ct": {"cs-tv": {"lam": 0.3}}})
    b = tuned("fast.json", {"smoke-ct": {"fast": {"eta": 1.0, "samples": 4}}})
    assert read_params_files([a, b], suite) == {"smoke-ct": {"cs-tv": {"lam": 0.3}, "fast": {"eta": 1.0, "samples": 4}}}
    assert read_params_files([a], suite) == {"smoke-ct": {"cs-tv": {"lam": 0.3}}}
    c = tuned("other.json", {"smoke-ct": {"cs-tv": {"lam": 3.0}}})
    with pytest.raises(InputError, match="cs-tv is set by both classical.json and other.json") as e:
        read_params_files([a, c], suite)
    assert "\n" not in str(e.value)


def test_params_carry_named_settings_and_refuse_bad_values(tmp_path):
    """A tuned volume row's z solve and the CT data term are names, not numbers: they are read back; an unknown name,
    a string where a number belongs, or a negative z weight is a one-line error naming the setting."""
    from medrecon.benchmark.manifest import load_suite
    from medrecon.benchmark.params import read_params
    from medrecon.errors import InputError

    suite = load_suite("smoke")
    good = {"fast": {"volume": True, "z_weight": 2.0, "z_solve": "admm", "z_rho": 0.03, "data_term": "pwls"}}
    p = tmp_path / "tuned.json"
    p.write_text(json.dumps({"format": "medrecon-tuned/1", "params": {"smoke-ct": good}}))
    assert read_params(p, suite) == {"smoke-ct": good}
    for key, bad in (("z_solve", "cg"), ("lam", "0.3"), ("z_weight", -1.0), ("data_term", "l1"), ("z_rho", 0.0)):
        p.write_text(json.dumps({"format": "medrecon-tuned/1", "params": {"smoke-ct": {"fast": {key: bad}}}}))
        with pytest.raises(InputError, match=f"invalid setting\\(s\\) {key}") as e:
            read_params(p, suite)
        assert "\n" not in str(e.value)
