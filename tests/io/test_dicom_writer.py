"""DICOM series writer: geometry and voxels survive load_dicom; patient/study copied, series new."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medrecon.errors import InputError
from medrecon.io.detect import detect_format
from medrecon.io.dicom_writer import (
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    SECONDARY_CAPTURE_STORAGE,
    write_dicom_series,
)
from medrecon.io.volumes import load_dicom

PLANTED_NAME, PLANTED_ID, PLANTED_STUDY = "Doe^Planted", "PLANTED-123", "1.2.826.0.1.3680043.8.498.4242"


def _oblique_lps_affine(spacing=(2.5, 0.7, 0.9), origin=(-30.0, 12.0, 40.0)) -> np.ndarray:
    """(slice, row, col) -> LPS with a rotated (oblique) orientation; slices along +normal."""
    a = np.deg2rad(20.0)
    row_cos = np.array([np.cos(a), np.sin(a), 0.0])  # along a column index
    col_cos = np.array([0.0, np.cos(0.3), -np.sin(0.3)])
    col_cos -= (col_cos @ row_cos) * row_cos
    col_cos /= np.linalg.norm(col_cos)  # along a row index
    normal = np.cross(row_cos, col_cos)
    affine = np.eye(4)
    affine[:3, 0] = normal * spacing[0]
    affine[:3, 1] = col_cos * spacing[1]
    affine[:3, 2] = row_cos * spacing[2]
    affine[:3, 3] = origin
    return affine


def _ct_volume(shape=(5, 12, 10)) -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.uniform(-1024, 2000, shape).astype(np.float32)
    data[0, 0, 0], data[-1, -1, -1] = -1024.0, 3071.0
    return data


def _planted_like(path) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = PLANTED_NAME, PLANTED_ID, "19010203", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = PLANTED_STUDY, generate_uid()
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.77"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240102", "101010", "ACC-9", "S1"
    ds.ReferringPhysicianName = "Ref^Doc"
    ds.Modality, ds.KVP = "CT", 120
    ds.save_as(path, enforce_file_format=True)


def test_ct_series_round_trip(tmp_path):
    data, affine = _ct_volume(), _oblique_lps_affine()
    files = write_dicom_series(tmp_path / "out", data, affine, "CT", None, "recon", "medrecon 0.1.0 test")
    assert [f.name for f in files] == [f"IM{k:05d}.dcm" for k in range(1, 6)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left
    series = set()
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == CT_IMAGE_STORAGE and ds.Modality == "CT"
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.DerivationDescription == "medrecon 0.1.0 test"
        assert ds.pixel_array.dtype == np.int16 and float(ds.RescaleSlope) == 1.0
        assert ds.SeriesNumber == 900 and "WindowCenter" in ds
        series.add(ds.SeriesInstanceUID)
    assert len(series) == 1
    vol = load_dicom(tmp_path / "out")
    assert vol.modality == "CT" and vol.space == "LPS" and vol.shape == data.shape
    np.testing.assert_allclose(vol.data, data, atol=0.5 + 1e-3)  # 1-HU steps
    np.testing.assert_allclose(vol.affine, affine, atol=1e-4)
    assert detect_format(tmp_path / "out") == "dicom" and detect_format(files[0]) == "dicom"


def test_mr_series_scaled_to_int16(tmp_path):
    data = np.random.default_rng(1).uniform(0, 3.7e-4, (3, 8, 8)).astype(np.float32)
    affine = _oblique_lps_affine()
    write_dicom_series(tmp_path / "mr", data, affine, "MR", None, "mr recon", "medrecon", window=(1e-4, 2e-4))
    ds = pydicom.dcmread(next((tmp_path / "mr").iterdir()))
    assert ds.SOPClassUID == MR_IMAGE_STORAGE and ds.ScanningSequence == "RM"
    assert int(np.abs(ds.pixel_array).max()) > 30000  # the int16 range is used
    vol = load_dicom(tmp_path / "mr")
    slope = float(ds.RescaleSlope)
    np.testing.assert_allclose(vol.data, data, atol=slope / 2 * 1.001)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-4)


def test_like_copies_patient_and_study_new_series(tmp_path):
    _planted_like(tmp_path / "src.dcm")
    files = write_dicom_series(tmp_path / "out", _ct_volume(), _oblique_lps_affine(), None, tmp_path / "src.dcm",
                               "recon", "medrecon")  # fmt: skip
    src = pydicom.dcmread(tmp_path / "src.dcm")
    uids = set()
    for f in files:
        ds = pydicom.dcmread(f)
        assert ds.Modality == "CT"  # taken from like
        assert str(ds.PatientName) == PLANTED_NAME and ds.PatientID == PLANTED_ID
        assert ds.PatientBirthDate == "19010203" and ds.PatientSex == "O"
        assert ds.StudyInstanceUID == PLANTED_STUDY and ds.AccessionNumber == "ACC-9" and ds.StudyID == "S1"
        assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID and ds.KVP == 120
        assert ds.SeriesInstanceUID != src.SeriesInstanceUID
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == len(files) and src.SOPInstanceUID not in uids
    # the loader never exposes the copied identifiers
    vol = load_dicom(tmp_path / "out")
    assert PLANTED_NAME not in repr(vol) + str(vol.meta) and PLANTED_ID not in str(vol.meta)


def test_secondary_capture_without_geometry(tmp_path):
    files = write_dicom_series(tmp_path / "sc", np.ones((2, 4, 4)), None, None, None, "sc", "medrecon")
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == SECONDARY_CAPTURE_STORAGE and ds.Modality == "OT"
    assert "ImagePositionPatient" not in ds and ds.ConversionType == "WSD"


def test_errors_and_atomicity(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        write_dicom_series(tmp_path / "busy", _ct_volume(), _oblique_lps_affine(), "CT", None, "d", "d")
    bad = _ct_volume()
    bad[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        write_dicom_series(tmp_path / "nan", bad, _oblique_lps_affine(), "CT", None, "d", "d")
    sheared = _oblique_lps_affine()
    sheared[:3, 1] = sheared[:3, 2]
    with pytest.raises(InputError, match="orthogonal"):
        write_dicom_series(tmp_path / "shear", _ct_volume(), sheared, "CT", None, "d", "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


@pytest.mark.data
def test_real_ct_series_as_like(shared_data, tmp_path):
    src = shared_data / "ct" / "totalseg_ct_dicom"
    vol = load_dicom(src)
    files = write_dicom_series(tmp_path / "out", vol.data, vol.affine, "CT", src, "recon", "medrecon 0.1.0 test")
    assert len(files) == vol.shape[0]
    src_ds = pydicom.dcmread(next(src.iterdir()), stop_before_pixels=True)
    ds = pydicom.dcmread(files[0])
    assert ds.StudyInstanceUID == src_ds.StudyInstanceUID and ds.SeriesInstanceUID != src_ds.SeriesInstanceUID
    assert ds.FrameOfReferenceUID == src_ds.FrameOfReferenceUID
    again = load_dicom(tmp_path / "out")
    np.testing.assert_allclose(again.data, vol.data, atol=0.5 + 1e-3)
    np.testing.assert_allclose(again.affine, vol.affine, atol=1e-3)
