"""The format registry (medrecon/io/formats): one module per format gives detection, reading, identifiers and
the fuzzer's sample; adding a format touches nothing else."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from medrecon.cli import main as cli_main
from medrecon.errors import InputError, MedreconError
from medrecon.io import formats
from medrecon.io.detect import detect_format
from medrecon.io.formats.base import FormatSpec, Sample, name_parts, tiny_kspace

MAGIC = b"TOYK0001\n"
SECRET = "Qwxzrt^Plmnbv"  # a patient name the toy header carries


def _sniff(p) -> bool:
    return p.head(len(MAGIC)) == MAGIC


def _read(path: Path, slices, axes):
    """``MAGIC``, a JSON line ``{"shape": [...], "patient": ...}``, then complex64 k-space ``(S, C, H, W)``."""
    from medrecon.io.guards import check_size, nbytes_of
    from medrecon.io.measurement import LoadedInput, slice_range

    raw = path.read_bytes()
    line, _, body = raw[len(MAGIC):].partition(b"\n")
    try:
        shape = tuple(int(n) for n in json.loads(line)["shape"])
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path.name}: damaged toy header") from None
    if len(shape) != 4 or min(shape) < 1:
        raise InputError(f"{path.name}: the toy header's shape must be 4 positive sizes")
    check_size(nbytes_of(shape, 8), "toy k-space", path.name)  # size from the header before reading
    if len(body) != int(np.prod(shape)) * 8:
        raise InputError(f"{path.name}: the toy data is truncated")
    k = np.frombuffer(body, np.complex64).reshape(shape)
    return LoadedInput("mri", k[slice_range(slices, shape[0])], None, shape[-2:])


def _identifiers(path: Path) -> list[str]:
    line = path.read_bytes()[len(MAGIC):].partition(b"\n")[0]
    try:
        return name_parts(json.loads(line).get("patient", ""))
    except ValueError:
        return []


def _tiny(path: Path) -> Path:
    k, _, _ = tiny_kspace()
    path = Path(path)
    path.write_bytes(MAGIC + json.dumps({"shape": list(k.shape), "patient": SECRET}).encode() + b"\n" + k.tobytes())
    return path


@pytest.fixture
def toy_format():
    spec = formats.register(FormatSpec("toyk", _sniff, order=90, read_measurement=_read, identifiers=_identifiers,
                                       samples={"toyk": Sample(_tiny, "x.toy")},
                                       duties="shape from the header bounds the read; no other fields"))
    yield spec
    del formats.FORMATS["toyk"]


def test_a_format_registered_in_one_place_is_detected_read_scrubbed_and_fuzzed(toy_format, tmp_path, capsys):
    from medrecon.testing.fuzzing import exercise, make_seed, mutate
    from medrecon.testing.samples import seeds

    seed = make_seed("toyk", tmp_path / "seed")  # the fuzzer finds the sample through the registry
    assert seeds()["toyk"][1] == "measurement"
    path = seed.rename(tmp_path / "Qwxzrt_brain.toy")  # hospital layouts put names in file names
    assert detect_format(path) == "toyk"

    out = tmp_path / "r.h5"
    assert cli_main(["recon", str(path), "--method", "zero-filled", "--out", str(out), "--quiet"]) == 0
    record = (tmp_path / "r.h5.run.json").read_text()
    assert json.loads(record)["method"] == "zero-filled"
    assert "Qwxzrt" not in record and "[removed]_brain.toy" in record  # its identifiers are scrubbed like DICOM's

    res = exercise(path, "measurement")  # sandboxed read + zero-filled, as the fuzzer does
    assert res.image.shape == (1, 16, 16)
    rng = random.Random(0)
    data = path.read_bytes()
    for i in range(20):
        bad = tmp_path / f"m{i}.toy"
        bad.write_bytes(mutate(data, rng)[1])
        try:
            exercise(bad, "measurement")
        except MedreconError:
            pass  # a clean refusal; any other exception fails the test


def test_shipped_formats_each_bring_a_sample_their_sniff_recognises(tmp_path):
    for name, (sample, spec) in formats.samples().items():
        (tmp_path / name).mkdir()
        path = sample.writer(tmp_path / name / sample.filename)
        assert formats.detect(path) is spec, name
        assert spec.duties, f"{spec.name} does not state its security duties"


def test_register_refuses_duplicates_and_formats_without_a_reader():
    with pytest.raises(ValueError, match="already registered"):
        formats.register(formats.get("nifti"))
    with pytest.raises(ValueError, match="read_measurement, read_image"):
        formats.register(FormatSpec("nothing", lambda p: False))
    with pytest.raises(ValueError, match="--format name and a writer"):
        formats.register(FormatSpec("half", lambda p: False, read_image=lambda p, m: None, output="half"))


def test_an_output_format_registered_in_one_place_is_a_recon_and_batch_format(tmp_path, capsys):
    """A writer (`output`, `write`, `out_names`, `out_suffix`) reaches `recon --format`, name-based choice and
    batch output names with no other edit."""
    from medrecon.scale.studies import output_name
    from medrecon.testing.samples import tiny_fastmri

    def write(out: Path, o: formats.Output) -> list[Path]:
        np.save(out, o.image)  # a test writer; real writers are atomic
        return [out]

    spec = formats.register(FormatSpec("toynpy", lambda p: False, order=999, output="toynpy", write=write,
                                       out_names=(".toy.npy",), out_suffix=".toy.npy", duties="test only"))
    try:
        with pytest.raises(SystemExit):
            cli_main(["recon", "--help"])
        assert "toynpy" in capsys.readouterr().out
        src = tiny_fastmri(tmp_path / "k.h5")
        for args, out in ((["--format", "toynpy"], tmp_path / "a.npy"), ([], tmp_path / "b.toy.npy")):
            assert cli_main(["recon", str(src), "--method", "zero-filled", "--out", str(out), "--quiet", *args]) == 0
            assert np.load(out).ndim == 3
            assert json.loads((tmp_path / (out.name + ".run.json")).read_text())["outputs"][0]["file"] == out.name
        assert output_name(Path("study.h5"), "toynpy") == "study.toy.npy"
        assert formats.output("x.h5") is formats.get("fastmri") and formats.output("x.nii.gz") is formats.get("nifti")
    finally:
        del formats.FORMATS["toynpy"]
    with pytest.raises(SystemExit) as e:  # unregistered again: an argparse error, exit 2
        cli_main(["recon", str(src), "--method", "zero-filled", "--out", str(tmp_path / "c"), "--format", "toynpy"])
    assert e.value.code == 2
