"""Run records: hashes of inputs/outputs, base names only, no patient identifiers anywhere."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

import medrecon
from medrecon.errors import InputError
from medrecon.io.run_record import record_path, scrub_identifiers, sha256_path, write_run_record

NAME, PID, BIRTH = "Doe^Planted", "PLANTED-123", "19010203"


def _dicom(path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PID, BIRTH
    ds.Modality, ds.Rows, ds.Columns = "CT", 2, 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.zeros((2, 2), "<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_record_has_no_identifiers_and_correct_hashes(tmp_path):
    # a hospital-style layout: the patient's name and ID are in the folder and file names
    src = tmp_path / "Doe_Planted" / PID
    src.mkdir(parents=True)
    _dicom(src / f"{PID}_0001.dcm")
    out = tmp_path / "recon.h5"
    out.write_bytes(b"reconstruction bytes")
    series = tmp_path / "series"
    series.mkdir()
    (series / "IM00001.dcm").write_bytes(b"a")
    (series / "IM00002.dcm").write_bytes(b"b")
    rec = write_run_record(
        out,
        command=["medrecon", "reconstruct", str(src), f"--out={out}", "--note", "doe^planted"],
        inputs=[src, src / f"{PID}_0001.dcm"],
        outputs=[out, series],
        method="dps",
        params={"steps": 50, "zeta": 0.5, "comment": f"from {PID}", "patient_name": "x", "mask": src / "m.npy"},
        prior={"name": "mri-brain", "sha256": "ab" * 32},
        seeds={"sampler": 0, "mask": np.int64(3)},
        device="cpu",
        seconds=1.5,
        nfe=100,
        metrics={"psnr": np.float32(31.5), "ssim": float("nan")},
    )
    assert rec == tmp_path / "recon.h5.run.json" == record_path(out)
    text = rec.read_text(encoding="utf-8")
    for secret in (NAME, PID, BIRTH, "Doe", "Planted", str(tmp_path)):
        assert secret.lower() not in text.lower()
    data = json.loads(text)
    assert data["medrecon_version"] == medrecon.__version__ and data["created_utc"].endswith("Z")
    assert data["outputs"][0] == {
        "file": "recon.h5", "kind": "file", "bytes": 20, "sha256": hashlib.sha256(b"reconstruction bytes").hexdigest()
    }  # fmt: skip
    assert data["outputs"][1]["kind"] == "folder" and data["outputs"][1]["sha256"] == sha256_path(series)
    assert data["inputs"][1]["sha256"] == sha256_path(src / f"{PID}_0001.dcm")
    assert data["command"][:2] == ["medrecon", "reconstruct"] and data["command"][3] == "--out=recon.h5"
    assert "base names" in data["replay"] and "sha256" in data["replay"]  # issue 25: why it cannot be pasted back
    assert "patient_name" not in data["params"] and data["params"]["steps"] == 50
    assert data["params"]["mask"] == "m.npy"
    assert data["prior"] == {"name": "mri-brain", "sha256": "ab" * 32}
    assert data["seeds"] == {"sampler": 0, "mask": 3} and data["nfe"] == 100
    assert data["metrics"]["psnr"] == pytest.approx(31.5) and data["metrics"]["ssim"] is None
    assert not list(tmp_path.glob(".*tmp*"))


def test_folder_hash_depends_on_content_not_location(tmp_path):
    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "x.dcm").write_bytes(b"1")
    (a / "sub" / "y.dcm").write_bytes(b"2")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert sha256_path(a) == sha256_path(b)
    (b / "x.dcm").write_bytes(b"3")
    assert sha256_path(a) != sha256_path(b)
    with pytest.raises(InputError, match="does not exist"):
        write_run_record(tmp_path / "o", command=[], inputs=[tmp_path / "missing"], outputs=[], method="zf",
                         params={}, prior=None, seeds={}, device="cpu", seconds=0.0)  # fmt: skip


def test_scrub_identifiers_recursive():
    obj = {
        "patient_id": "P1",
        "nested": {"PatientName": "x", "ok": 2, "list": [{"birth_date": 1, "v": "Smith here"}]},
        "SubjectAge": 3,
        "value": ("keep", "SMITH"),
    }
    out = scrub_identifiers(obj, planted=["Smith", "J"])
    assert out == {"nested": {"ok": 2, "list": [{"v": "[removed] here"}]}, "value": ["keep", "[removed]"]}
    json.dumps(out)  # JSON-ready
