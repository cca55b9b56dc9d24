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
