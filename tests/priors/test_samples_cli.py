"""``medrecon priors samples``: unconditional samples of any prior to a PNG, and the samplers behind it."""

from __future__ import annotations

import numpy as np
import pytest

from medrecon.cli import main as cli_main
from medrecon.errors import InputError
from medrecon.priors import load_prior
from medrecon.priors.finalize import sample_figure, unconditional_samples


def test_priors_samples_writes_a_png_of_a_shipped_prior(tmp_path, capfd, one_thread):
    out = tmp_path / "s.png"
    assert cli_main(["priors", "samples", "mri-brain", "--out", str(out), "--n", "2", "--size", "16",
                     "--steps", "3", "--device", "cpu"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [f.name for f in tmp_path.iterdir()] == ["s.png"]  # no temporary left beside it
    assert "2 samples of mri-brain (ancestral, 3 steps, 16x16, seed 0)" in capfd.readouterr().out


@pytest.mark.parametrize("args, msg", [
    (["no-such-prior", "--out", "{d}/a.png"], "no prior named"),
    (["ct-body", "--out", "{d}/a.jpg"], "must be a .png"),
    (["ct-body", "--out", "{d}/missing/a.png"], "does not exist"),
    (["ct-body", "--out", "{d}/a.png", "--eta", "2"], "--eta"),
    (["ct-body", "--out", "{d}/a.png", "--steps", "2000"], "exceeds the prior's 1000"),
])
def test_priors_samples_bad_input_is_one_line_and_writes_nothing(tmp_path, capfd, args, msg):
    code = cli_main(["priors", "samples", *[a.format(d=tmp_path) for a in args]])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("medrecon: error:") and msg in err[0]
    assert not list(tmp_path.rglob("*.png"))


def test_unconditional_samples_are_seeded_and_both_samplers_give_finite_images(one_thread):
    prior = load_prior("ct-body", "ct")
    a = unconditional_samples(prior, 2, 16, seed=3, steps=4)
    b = unconditional_samples(prior, 2, 16, seed=3, steps=4)
    c = unconditional_samples(prior, 2, 16, seed=4, steps=4)
    assert a.shape == (2, 16, 16) and np.array_equal(a, b) and not np.array_equal(a, c)
    ddim = unconditional_samples(prior, 2, 16, seed=3, steps=4, eta=0.0)
    assert np.isfinite(ddim).all() and not np.array_equal(a, ddim)  # eta 0 draws no fresh noise: other images


def test_sample_figure_failing_mid_write_leaves_no_file(tmp_path, monkeypatch, one_thread):
    from matplotlib.figure import Figure

    def broken_savefig(self, fname, **kw):
        open(fname, "wb").write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    # atomic_write turns the writer's OSError into a one-line InputError naming the output
    with pytest.raises(InputError, match="cannot write .*disk full"):
        sample_figure(load_prior("ct-body", "ct"), tmp_path / "s.png", n=1, size=16, seed=0, steps=2)
    assert list(tmp_path.iterdir()) == []
