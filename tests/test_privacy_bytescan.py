"""The byte scan (issue 23, defect 2): planted identifiers reach no byte medrecon prints or writes.

Identifiers are planted where hospital data carry them: DICOM patient modules, fastMRI identifying attrs and
ISMRMRD headers (subject and study information, accession number), and the names of the files and folders
that hold them. Every command that reads such data runs once: single-file and batch ``recon`` (with one
broken study), ``simulate``, ``evaluate``, ``train-prior`` and ``benchmark --data-root``. Then every byte of
stdout, stderr and of every file written (outside the inputs) is searched for each planted string, case
insensitively, as UTF-8 and UTF-16. The one exception is a DICOM series written with ``--like``: it carries
the source patient's module on purpose (README, Security and privacy), and the scan checks that it does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medrecon.cli import main as cli_main
from medrecon.io.formats.base import PLANTED, subject_xml
from medrecon.testing import samples

PID, NAME, BIRTH, ACC = PLANTED["id"], PLANTED["name"], PLANTED["birth"], PLANTED["accession"]
NEEDLES = [NAME, *NAME.split("^"), PID, BIRTH, ACC]
TINY_NET = json.dumps({"channels": [8, 8, 8, 8], "norm_num_groups": 4, "num_head_channels": 8})


def _hits(data: bytes) -> list[str]:
    low = data.lower()
    return [n for n in NEEDLES if n.lower().encode() in low or n.lower().encode("utf-16-le") in low]


def _study_header(k_shape) -> bytes:
    """An ISMRMRD header with subject information and the study's accession number (fastMRI keeps it)."""
    from medrecon.io.fastmri import minimal_ismrmrd_header

    xml = minimal_ismrmrd_header(k_shape[-2:], k_shape[-2:], k_shape[0])
    tag = '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
    study = f"<studyInformation><accessionNumber>{ACC}</accessionNumber></studyInformation>"
    return xml.replace(tag, tag + subject_xml() + study, 1).encode()


def _planted_fastmri(path: Path, seed: int, fully_sampled: bool = False) -> Path:
    """A fastMRI multicoil file whose attrs, header and name carry the planted identifiers."""
    import h5py

    from medrecon.io.fastmri import write_fastmri_kspace
    from medrecon.io.formats.base import tiny_kspace

    k, mask, target = tiny_kspace(slices=2, coils=2, h=16, w=16, seed=seed)
    write_fastmri_kspace(path, k, target=target, mask=None if fully_sampled else mask,
                         header_xml=_study_header(k.shape))
    with h5py.File(path, "a") as f:  # as a hospital converter might leave them
        f.attrs["patient_id"] = PID
        f.attrs["patient_name"] = NAME
        f.attrs["patient_birth_date"] = BIRTH
        f.attrs["accessionNumber"] = ACC
    return path


def _planted_series(folder: Path, n: int = 3, size: int = 32) -> Path:
    import pydicom

    folder.mkdir(parents=True)
    uid = pydicom.uid.generate_uid()
    for z in range(n):
        samples.tiny_dicom(folder / f"{PID}_{z}.dcm", z=float(z), series_uid=uid, size=size)
    return folder


class _Scan:
    """Runs commands and collects everything they print."""

    def __init__(self, capfd) -> None:
        self.capfd = capfd
        self.printed: list[tuple[str, str]] = []

    def run(self, *args, ok: bool = True) -> int:
        self.capfd.readouterr()
        code = cli_main([str(a) for a in args])
        out, err = self.capfd.readouterr()
        self.printed.append((" ".join(str(a) for a in args[:2]), out + err))
        if ok:
            assert code == 0, err
        return code


@pytest.mark.slow
def test_no_planted_identifier_in_any_byte_printed_or_written(tmp_path, capfd, monkeypatch, one_thread):
    monkeypatch.setenv("MEDRECON_READ_TIMEOUT", "60")
    inputs = tmp_path / "in"
    patient = inputs / PID  # a hospital layout: one folder per patient, named by the record number
    patient.mkdir(parents=True)
    single = _planted_fastmri(patient / f"{NAME.split('^')[0]}_knee.h5", seed=0)
    batch_in = inputs / f"batch_{PID}"
    batch_in.mkdir()
    _planted_fastmri(batch_in / f"{PID}_a.h5", seed=1)
    _planted_fastmri(batch_in / f"{PID}_b.h5", seed=2)
    broken = _planted_fastmri(batch_in / f"{PID}_broken.h5", seed=3)
    broken.write_bytes(broken.read_bytes()[:-2500])  # truncated: the batch must report it as failed
    series = _planted_series(inputs / f"ct_{NAME.split('^')[1]}")
    fully = inputs / f"fastmri_{PID}"  # benchmark --data-root: the user's own fastMRI folder
    fully.mkdir()
    for i in range(3):
        _planted_fastmri(fully / f"{PID}_{i}.h5", seed=10 + i, fully_sampled=True)
    ismrmrd_file = None
    try:
        import ismrmrd  # noqa: F401

        ismrmrd_file = samples.tiny_ismrmrd(patient / f"{PID}_raw.h5", planted=True)
    except ImportError:
        pass

    out = tmp_path / "out"
    out.mkdir()
    s = _Scan(capfd)
    s.run("recon", single, "--method", "zero-filled", "--out", out / f"{PID}_recon.h5")
    s.run("recon", single, "--method", "sense", "--iters", "3", "--format", "nifti", "--out", out / f"{PID}.nii.gz")
    if ismrmrd_file is not None:
        s.run("recon", ismrmrd_file, "--method", "zero-filled", "--out", out / f"{PID}_raw_recon.h5")
    code = s.run("recon", batch_in, "--method", "zero-filled", "--out", out / f"batch_{PID}", ok=False)
    assert code != 0  # one study failed
    assert json.loads((out / f"batch_{PID}" / "manifest.json").read_text())["counts"]["failed"] == 1
    s.run("simulate", "ct", "--image", series, "--views", "8", "--out", out / f"{PID}_sino.h5")
    s.run("recon", out / f"{PID}_sino.h5", "--method", "fbp", "--format", "dicom", "--like", series,
          "--out", out / f"like_{PID}")
    s.run("evaluate", "--target", batch_in, "--recon", out / f"batch_{PID}", ok=False)
    s.run("evaluate", "--target", batch_in, "--recon", out / f"batch_{PID}", "--json", ok=False)
    s.run("train-prior", "--modality", "ct", "--data", series, "--out", out / f"prior_{PID}", "--size", "16",
          "--steps", "2", "--batch-size", "2", "--device", "cpu", "--network", TINY_NET)
    s.run("benchmark", "--suite", "fastmri", "--methods", "zero-filled", "--datasets", "fastmri-4x", "--device",
          "cpu", "--data-root", fully, "--out", out / f"bench_{PID}")

    leaks = [(cmd, _hits(text.encode()), text[:2000]) for cmd, text in s.printed if _hits(text.encode())]
    like = out / f"like_{PID}"
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) > 20
    for p in written:
        hits = _hits(p.read_bytes())
        if like in p.parents:
            continue
        if hits:
            leaks.append((str(p.relative_to(out)), hits))
    assert not leaks, f"planted identifiers found: {leaks}"
    # the documented exception really is patient data: the --like series keeps the source's patient module
    like_files = [p for p in like.rglob("*.dcm")]
    assert like_files and all(PID.encode() in p.read_bytes() for p in like_files)
    # and the identifiers were really there to be found
    assert PID.encode() in single.read_bytes() and ACC.encode() in single.read_bytes()


def test_dicom_folder_identifiers_come_from_every_file(tmp_path):
    """A series whose second file names another patient: both are known (defect 2: first file only)."""
    import pydicom

    from medrecon.io.run_record import identifiers_in

    folder = tmp_path / "s"
    folder.mkdir()
    uid = pydicom.uid.generate_uid()
    samples.tiny_dicom(folder / "a.dcm", z=0.0, series_uid=uid)
    b = samples.tiny_dicom(folder / "b.dcm", z=1.0, series_uid=uid, planted=False)
    ds = pydicom.dcmread(b)
    ds.OtherPatientIDs = "OTHER-55821"
    ds.save_as(b)
    found = identifiers_in(folder)
    assert PID in found and "OTHER-55821" in found


def test_accession_numbers_of_ismrmrd_headers_are_collected(tmp_path):
    from medrecon.io.run_record import identifiers_in

    f = _planted_fastmri(tmp_path / "x.h5", seed=0)
    import h5py

    with h5py.File(f, "a") as h:  # only the header carries it now
        del h.attrs["accessionNumber"]
    assert ACC in identifiers_in(f)


def test_the_layer_scrubs_text_refuses_binary_and_lets_like_dicom_through(tmp_path):
    from medrecon.errors import InputError
    from medrecon.io import privacy
    from medrecon.io.atomic import atomic_write, write_text

    privacy.forget()
    try:
        privacy.register([PID, "ab"])  # two-letter values are never used (they would blank ordinary words)
        p = write_text(tmp_path / "r.json", json.dumps({"file": f"{PID.lower()}.h5", "ab": "abc"}))
        assert json.loads(p.read_text()) == {"file": "[removed].h5", "ab": "abc"}
        with pytest.raises(InputError, match="patient identifier"):
            with atomic_write(tmp_path / "x.bin") as tmp:
                tmp.write_bytes(b"\x00\x01" + PID.encode("utf-16-le") + b"\x00")
        assert not (tmp_path / "x.bin").exists() and list(tmp_path.iterdir()) == [p]
        with privacy.allow_identifiers(), atomic_write(tmp_path / "y.dcm") as tmp:
            tmp.write_bytes(PID.encode())
        assert (tmp_path / "y.dcm").read_bytes() == PID.encode()
        assert privacy.scrub_text(f"done {PID}.h5") == "done [removed].h5"
    finally:
        privacy.forget()


def test_stdout_is_scrubbed_even_for_messages_we_did_not_write(tmp_path, capfd, monkeypatch):
    """``wrote ...`` names an output the user named after the patient; the stream layer removes it."""
    src = _planted_fastmri(tmp_path / "a.h5", seed=0)
    out = tmp_path / f"{PID}.h5"
    capfd.readouterr()
    assert cli_main(["recon", str(src), "--method", "zero-filled", "--out", str(out)]) == 0
    printed = "".join(capfd.readouterr())
    assert "[removed]" in printed and not _hits(printed.encode())
    assert np.isfinite(np.asarray(__import__("h5py").File(out)["reconstruction"])).all()
