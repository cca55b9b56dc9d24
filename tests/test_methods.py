"""The method registry (medrecon/methods.py): one place lists the methods, their modalities and parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from medrecon import methods as registry
from medrecon.cli import main as cli_main
from medrecon.errors import InputError
from medrecon.recon.config import CT_METHODS, DEFAULTS, LEARNED, MRI_METHODS, ReconConfig


def test_registry_holds_the_shipped_methods_and_defaults():
    assert MRI_METHODS == ("zero-filled", "sense", "cs-wavelet", "cs-tv", "bart-pics", "dps", "fast", "daps",
                           "langevin")
    assert CT_METHODS == ("fbp", "tv", "dps", "fast", "daps", "langevin")
    assert LEARNED == ("dps", "fast", "daps", "langevin")
    assert ReconConfig("dps").method_params("mri") == {"steps": 1000, "zeta": 3.0, "final_dc": 0}
    assert ReconConfig("dps").method_params("ct") == {"steps": 1000, "zeta": 10.0, "final_dc": 0}
    assert ReconConfig("fast").method_params("ct") == {"steps": 50, "cg_iters": 20, "eta": 0.85, "tv": 0.3,
                                                       "final_dc": 0}
    assert ReconConfig("fast", steps=10).method_params("mri") == {"steps": 10, "cg_iters": 5, "eta": 0.85, "tv": 0.3,
                                                                  "final_dc": 0}
    assert DEFAULTS["tv"] == {"lam": 1.0, "iters": 100}
    assert registry.bench_names("ct") == ("fbp", "cs-tv", "dps", "fast", "daps", "langevin")


@pytest.mark.parametrize("method", ["dps", "fast", "daps", "langevin"])
def test_each_chain_default_is_the_registry_default(method):
    """A chain called from Python without settings behaves as the command line's defaults (MRI)."""
    import inspect

    from medrecon.sampling import SAMPLERS

    sig = inspect.signature(SAMPLERS[method]).parameters
    for name, value in registry.get(method).defaults("mri").items():
        if name == "final_dc":  # applied by posterior_sample, not by the chain
            continue
        assert sig[name].default == value, (method, name)


def test_dps_chain_default_is_the_registry_default():
    """The sampler's own default once said 1.0 where the library default is 3 (a named bug of issue 17)."""
    import inspect

    from medrecon.sampling.dps import dps_chain

    assert inspect.signature(dps_chain).parameters["zeta"].default == registry.get("dps").defaults("mri")["zeta"]


def test_a_setting_the_method_does_not_take_is_an_error(capsys):
    with pytest.raises(InputError, match="--zeta does not apply to method fast"):
        ReconConfig("fast", zeta=3.0)
    with pytest.raises(InputError, match="unknown method"):
        ReconConfig("nope")
    code = cli_main(["recon", "missing.h5", "--method", "fast", "--zeta", "3", "--out", "x.h5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--zeta does not apply to method fast" in err[0]


@dataclass(frozen=True)
class ToyParams:
    iters: int = registry._p(7, "toy iterations")
    lam: float = registry._p(0.1, "toy weight", ct=0.2)
    toy_gain: float = registry._p(1.0, "a parameter no built-in method has")


def _toy_mri(data, p: ToyParams):
    """Zero-filled RSS times the gain: a known answer."""
    from operators import rss
    from operators.fft import ifft2c

    return rss(ifft2c(data.kspace)) * p.toy_gain


def _toy_ct(data, p: ToyParams):
    return data.A.fbp(data.sinogram) * p.toy_gain


@pytest.fixture
def toy():
    spec = registry.register(registry.MethodSpec("toy", ("mri", "ct"), False, ToyParams, "a toy method",
                                                 run={"mri": _toy_mri, "ct": _toy_ct}, demo=True))
    yield spec
    del registry.METHODS["toy"]


def test_registering_once_reaches_every_list(toy, capsys, tmp_path):
    """One register() call: the method is in `methods --json`, `recon --help` (with a flag for its own parameter),
    config, the demo and the benchmark and batch manifests."""
    assert cli_main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["toy"]["params"][1] == {"name": "lam", "type": "float", "default": 0.1, "help": "toy weight",
                                        "default_by_modality": {"ct": 0.2}}
    with pytest.raises(SystemExit):
        cli_main(["recon", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "toy [mri, ct]: iters=7, lam=0.1/0.2 (mri/ct), toy_gain=1.0" in help_text
    assert "--toy-gain TOY_GAIN toy: a parameter no built-in method has (default 1.0)" in help_text
    assert ReconConfig("toy", lam=0.5).method_params("ct") == {"iters": 7, "lam": 0.5, "toy_gain": 1.0}
    assert ReconConfig("toy", options={"toy_gain": 3.0}).method_params("mri")["toy_gain"] == 3.0
    assert "toy" in registry.names("ct") and "toy" in registry.bench_names("mri")

    from medrecon.app.demo import _methods

    assert _methods("mri")[-1] == "toy" and _methods("ct")[-1] == "toy"

    from medrecon.scale.manifest import result_settings

    assert result_settings(ReconConfig("toy", options={"toy_gain": 2.0}), None)["toy_gain"] == 2.0

    from medrecon.benchmark.manifest import load_suite
    from medrecon.benchmark.runner import plan_suite

    raw = json.loads(load_suite.__globals__["SUITES_DIR"].joinpath("smoke.json").read_text())
    ds = next(d for d in raw["datasets"] if d["modality"] == "mri")
    ds["methods"] = {"zero-filled": {}, "toy": {"iters": 3, "toy_gain": 2}}
    ds.pop("tuning_grid", None)
    raw["datasets"] = [ds]
    p = tmp_path / "toy-suite.json"
    p.write_text(json.dumps(raw))
    suite = load_suite(p)
    assert suite.datasets[0].methods["toy"] == {"iters": 3, "toy_gain": 2}
    assert [m for _, ms in plan_suite(suite, ["toy"], None) for m in ms] == ["toy"]


def test_a_registered_method_runs_through_recon_and_the_benchmark(toy, tmp_path):
    """The run hook: `medrecon recon --method toy --toy-gain 2` and the benchmark's run_method call the registered
    function, on MRI and CT, and the run record keeps its parameters."""
    import numpy as np
    import torch

    from medrecon.benchmark.data import Case
    from medrecon.benchmark.methods import run_method
    import h5py
    from medrecon.testing.samples import tiny_fastmri, tiny_sinogram

    src = tiny_fastmri(tmp_path / "k.h5")
    for method, extra in (("zero-filled", []), ("toy", ["--toy-gain", "2"])):
        assert cli_main(["recon", str(src), "--method", method, *extra, "--out", str(tmp_path / f"{method}.h5"),
                         "--quiet"]) == 0
    def read(name):
        with h5py.File(tmp_path / name, "r") as f:
            return f["reconstruction"][()]

    zf, toy_img = read("zero-filled.h5"), read("toy.h5")
    np.testing.assert_allclose(toy_img, 2 * zf, rtol=1e-6)
    record = json.loads((tmp_path / "toy.h5.run.json").read_text())
    assert record["method"] == "toy" and record["params"]["toy_gain"] == 2.0 and record["params"]["iters"] == 7

    sino = tiny_sinogram(tmp_path / "s.h5")
    for method, extra in (("fbp", []), ("toy", ["--toy-gain", "2"])):
        assert cli_main(["recon", str(sino), "--method", method, *extra, "--out", str(tmp_path / f"ct_{method}.h5"),
                         "--quiet"]) == 0
    fbp, toy_ct = read("ct_fbp.h5"), read("ct_toy.h5")
    np.testing.assert_allclose(toy_ct + 1000, 2 * (fbp + 1000), rtol=1e-4, atol=1e-2)  # HU = 1000 (mu/mu_w - 1)

    from medrecon.testing.samples import tiny_kspace

    k, mask, target = tiny_kspace()
    case = Case("toy", "mri", "tiny", [0], target, kspace=k, mask=mask, recon_size=target.shape[-2:])
    runs = {m: run_method(case, m, s, torch.device("cpu")) for m, s in (("zero-filled", {}),
                                                                       ("toy", {"toy_gain": 3.0, "iters": 2.0}))}
    np.testing.assert_allclose(runs["toy"].image, 3 * runs["zero-filled"].image, rtol=1e-6)
    assert runs["toy"].params == {"iters": 2, "lam": 0.1, "toy_gain": 3.0}

    # the batch front: `medrecon recon FOLDER --method toy --toy-gain 2 --out DIR` runs it and the batch manifest
    # records its settings
    folder = tmp_path / "batch_in"
    folder.mkdir()
    tiny_fastmri(folder / "a.h5")
    assert cli_main(["recon", str(folder), "--method", "toy", "--toy-gain", "2", "--out", str(tmp_path / "batch_out"),
                     "--quiet"]) == 0
    manifest = json.loads((tmp_path / "batch_out" / "manifest.json").read_text())
    text = json.dumps(manifest)
    assert '"toy_gain": 2.0' in text and '"method": "toy"' in text
    with h5py.File(tmp_path / "batch_out" / "a.h5", "r") as f:
        np.testing.assert_allclose(f["reconstruction"][()], 2 * zf, rtol=1e-6)  # same tiny file as above


def test_register_refuses_duplicates_and_bad_specs(toy):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(toy)
    with pytest.raises(ValueError, match="modalities"):
        registry.register(registry.MethodSpec("toy2", ("pet",), False, ToyParams, "x"))


def test_a_run_never_changes_the_shared_prior():
    """Precision is per call (issue 17): run_sampler with autocast leaves the cached prior as it was."""
    import torch

    from medrecon.priors import DiffusionPrior
    from medrecon.recon.result import run_sampler
    from medrecon.sampling import InverseProblem
    from operators import MultiCoilMRI, birdcage_maps

    torch.manual_seed(0)
    prior = DiffusionPrior("mri", {"channels": [16, 32, 32, 32], "norm_num_groups": 8, "num_head_channels": 32}).eval()
    before = dict(vars(prior))
    maps = birdcage_maps(2, (16, 16))[None]
    A = MultiCoilMRI(maps, torch.ones(16, dtype=torch.bool))
    y = A(torch.rand(1, 16, 16, dtype=torch.complex64))
    prob = InverseProblem(A, y, torch.ones(1, 1, 1), torch.zeros(1, 1, 1), torch.zeros(1), True)
    cfg = ReconConfig("fast", steps=2, autocast=True, progress=False)
    out = run_sampler(cfg, prior, prob, cfg.method_params("mri"))
    assert dict(vars(prior)).keys() == before.keys() and not hasattr(prior, "autocast_dtype")
    view = prior.at_precision(torch.bfloat16)
    assert view.autocast_dtype == torch.bfloat16 and prior.at_precision(None) is prior
    x = torch.randn(1, 2, 16, 16)
    assert torch.equal(view.eps(x, 10), prior.eps(x, 10))  # CPU: autocast applies on CUDA only
    assert out.mean.shape == (1, 16, 16)


@pytest.mark.parametrize("method, kw, match", [
    ("fast", dict(steps=0), "--steps must be between 1 and 1000"),
    ("dps", dict(steps=-5), "--steps must be between 1 and 1000"),
    ("fast", dict(eta=5.0), "--eta must be between 0 and 1"),
    ("fast", dict(cg_iters=0), "--cg-iters must be between 1"),
    ("sense", dict(iters=-4), "--iters must be between 1"),
    ("cs-tv", dict(lam=float("nan")), "--lam must be a finite number"),
    ("dps", dict(zeta=float("inf")), "--zeta must be a finite number"),
    ("fast", dict(batch_size=0), "--batch-size must be at least 1"),
    ("fast", dict(seed=2**64 + 1), "--seed must be between 0"),
    ("zero-filled", dict(mask="random", accel=0), "--accel must be a whole number between 1"),
    ("langevin", dict(steps=-1), "--steps must be between 1 and 1000"),
    ("langevin", dict(cg_iters=0), "--cg-iters must be between 1"),
    ("langevin", dict(step=1.5), "--step must be between 0.001 and 1"),
    ("langevin", dict(zeta=3.0), "--zeta does not apply to method langevin"),
    ("daps", dict(steps=-3), "--steps must be between 1 and 1000"),
    ("daps", dict(langevin=0), "--langevin must be between 1"),
    ("daps", dict(lr=2.5), "--lr must be between"),
    ("daps", dict(cg_iters=5), "--cg-iters does not apply to method daps"),
])
def test_out_of_range_settings_are_refused_before_any_work(method, kw, match):
    """Issue 23, defects 9-10: these ran for 20 s and failed with a traceback, or ran and gave garbage."""
    from medrecon.recon.config import FIELD_PARAMS

    own = {k: v for k, v in kw.items() if k not in registry.param_names() or k in FIELD_PARAMS}
    options = {k: v for k, v in kw.items() if k not in own}  # a registered method's own settings
    with pytest.raises(InputError, match=match):
        ReconConfig(method, **own, **({"options": options} if options else {}))


def test_ranges_are_listed_by_methods_json(capsys):
    assert cli_main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    fast = {p["name"]: p for p in rows["fast"]["params"]}
    assert fast["eta"]["range"] == [0.0, 1.0] and fast["steps"]["range"] == [1, 1000]
