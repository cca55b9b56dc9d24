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
    assert MRI_METHODS == ("zero-filled", "sense", "cs-wavelet", "cs-tv", "bart-pics", "dps", "fast")
    assert CT_METHODS == ("fbp", "tv", "dps", "fast")
    assert LEARNED == ("dps", "fast")
    assert ReconConfig("dps").method_params("mri") == {"steps": 1000, "zeta": 3.0}
    assert ReconConfig("dps").method_params("ct") == {"steps": 1000, "zeta": 10.0}
    assert ReconConfig("fast").method_params("ct") == {"steps": 50, "cg_iters": 20, "eta": 0.85}
    assert ReconConfig("fast", steps=10).method_params("mri") == {"steps": 10, "cg_iters": 5, "eta": 0.85}
    assert DEFAULTS["tv"] == {"lam": 1.0, "iters": 100}
    assert registry.bench_names("ct") == ("fbp", "cs-tv", "dps", "fast")


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


@pytest.fixture
def toy():
    spec = registry.register(registry.MethodSpec("toy", ("mri", "ct"), False, ToyParams, "a toy method"))
    yield spec
    del registry.METHODS["toy"]


def test_registering_once_reaches_every_list(toy, capsys, tmp_path):
    """One register() call: the method is in `methods --json`, `recon --help`, config and the benchmark."""
    assert cli_main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["toy"]["params"][1] == {"name": "lam", "type": "float", "default": 0.1, "help": "toy weight",
                                        "default_by_modality": {"ct": 0.2}}
    with pytest.raises(SystemExit):
        cli_main(["recon", "--help"])
    assert "toy [mri, ct]: iters=7, lam=0.1/0.2 (mri/ct)" in " ".join(capsys.readouterr().out.split())
    assert ReconConfig("toy", lam=0.5).method_params("ct") == {"iters": 7, "lam": 0.5}
    assert "toy" in registry.names("ct") and "toy" in registry.bench_names("mri")

    from medrecon.benchmark.manifest import load_suite
    from medrecon.benchmark.runner import plan_suite

    raw = json.loads(load_suite.__globals__["SUITES_DIR"].joinpath("smoke.json").read_text())
    ds = next(d for d in raw["datasets"] if d["modality"] == "mri")
    ds["methods"] = {"zero-filled": {}, "toy": {"iters": 3}}
    ds.pop("tuning_grid", None)
    raw["datasets"] = [ds]
    p = tmp_path / "toy-suite.json"
    p.write_text(json.dumps(raw))
    suite = load_suite(p)
    assert suite.datasets[0].methods["toy"] == {"iters": 3}
    assert [m for _, ms in plan_suite(suite, ["toy"], None) for m in ms] == ["toy"]


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
