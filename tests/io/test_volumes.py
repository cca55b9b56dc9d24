"""DICOM / NIfTI / NRRD / HDF5 volume loading: synthetic files always, real shared data when present."""

from __future__ import annotations

import gzip
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medrecon.errors import InputError
from medrecon.io.volumes import Volume, load_dicom, load_nifti, load_nrrd, load_volume, lps_to_ras

SECRET_NAME = "Zyxwv^Plantedname"
SECRET_ID = "PID-SECRET-48213"
SECRET_BIRTH = "19010203"


def _ct_slice(path: Path, z: float, stored: np.ndarray, series: str, instance: int, name: str = "") -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series
    ds.Modality, ds.Manufacturer, ds.KVP = "CT", "TestCo", 120
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = name, SECRET_ID if name else "", SECRET_BIRTH if name else ""
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-10.0, -20.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.75]
    ds.SliceThickness = 2.5
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = stored.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def _series(folder: Path, zs, name: str = "", shape=(6, 5)) -> dict[float, np.ndarray]:
    """Write one CT slice per z with file names in REVERSE position order; return stored pixels."""
    folder.mkdir(exist_ok=True)
    series, out = generate_uid(), {}
    rng = np.random.default_rng(0)
    for i, z in enumerate(zs):
        stored = rng.integers(0, 3000, shape).astype(np.uint16)
        _ct_slice(folder / f"img{len(zs) - i:03d}.dcm", z, stored, series, instance=i + 1, name=name)
        out[z] = stored
    return out


# ============================================================================ synthetic DICOM


def test_dicom_series_sorted_by_position_not_name(tmp_path):
    zs = [4.0, -2.0, 1.0, 7.0]  # 3 mm apart once sorted
    stored = _series(tmp_path / "s", zs)
    (tmp_path / "s" / "README.txt").write_text("not dicom")
    v = load_dicom(tmp_path / "s")
    assert v.shape == (4, 6, 5) and v.data.dtype == np.float32
    for k, z in enumerate(sorted(zs)):
        np.testing.assert_array_equal(v.data[k], stored[z].astype(np.float32) - 1024)
    assert v.modality == "CT" and v.kind == "hu" and v.space == "LPS"
    assert v.spacing == pytest.approx((3.0, 0.5, 0.75))
    # index (slice, row, col) -> LPS mm: row along the column cosine (y), col along the row cosine (x)
    np.testing.assert_allclose(v.affine @ [2, 3, 4, 1], [-10 + 4 * 0.75, -20 + 3 * 0.5, 4.0, 1])
    np.testing.assert_allclose(v.ras_affine @ [0, 0, 0, 1], [10, 20, -2, 1])
    assert v.meta["KVP"] == 120.0 and v.meta["Manufacturer"] == "TestCo"


def test_dicom_single_file(tmp_path):
    stored = _series(tmp_path / "s", [5.0])
    v = load_volume(next((tmp_path / "s").iterdir()))
    assert v.shape == (1, 6, 5) and v.spacing[0] == pytest.approx(2.5)
    np.testing.assert_array_equal(v.data[0], stored[5.0] - 1024.0)


def test_dicom_identifiers_never_exposed(tmp_path):
    _series(tmp_path / "s", [0.0, 1.0], name=SECRET_NAME)
    v = load_volume(tmp_path / "s")
    text = repr(v) + repr(v.meta) + str(v.meta)
    for secret in (SECRET_NAME, "Zyxwv", "Plantedname", SECRET_ID, SECRET_BIRTH):
        assert secret not in text
    assert not any("patient" in k.lower() for k in v.meta)


def test_dicom_truncated_raises_input_error(tmp_path):
    _series(tmp_path / "s", [0.0, 1.0], name=SECRET_NAME, shape=(64, 64))
    f = min((tmp_path / "s").iterdir())
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) - 4000])
    with pytest.raises(InputError) as err:
        load_volume(tmp_path / "s")
    assert SECRET_NAME not in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("zs", "match"), [([0.0, 1.0, 1.0], "share a position"), ([0.0, 1.0, 3.0], "spacing")])
def test_dicom_bad_series(tmp_path, zs, match):
    _series(tmp_path / "s", zs)
    with pytest.raises(InputError, match=match):
        load_dicom(tmp_path / "s")


def test_dicom_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM"):
        load_dicom(tmp_path / "empty")
    _series(tmp_path / "two", [0.0, 1.0])
    _ct_slice(tmp_path / "two" / "other.dcm", 2.0, np.zeros((6, 5), np.uint16), generate_uid(), 9)
    with pytest.raises(InputError, match="2 DICOM series"):
        load_dicom(tmp_path / "two")
    (tmp_path / "x.dcm").write_bytes(b"\0" * 300)
    with pytest.raises(InputError, match="not a DICOM"):
        load_dicom(tmp_path / "x.dcm")


# ============================================================================ synthetic NIfTI / NRRD / HDF5


def test_nifti_axes_and_affine(tmp_path):
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # (x, y, z)
    aff = np.array([[-0.9, 0, 0, 10], [0, 1.1, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(arr, aff), tmp_path / "v.nii.gz")
    v = load_nifti(tmp_path / "v.nii.gz", modality="CT")
    assert v.shape == (6, 5, 4) and v.kind == "hu" and v.space == "RAS"
    i, j, k = 3, 2, 5
    assert v.data[k, j, i] == arr[i, j, k]
    np.testing.assert_allclose(v.affine @ [k, j, i, 1], aff @ [i, j, k, 1])
    assert v.spacing == pytest.approx((2.5, 1.1, 0.9))
    np.testing.assert_allclose(v.ras_affine, v.affine)
    renamed = tmp_path / "noext.bin"  # dispatch is by content, not by name
    renamed.write_bytes((tmp_path / "v.nii.gz").read_bytes())
    np.testing.assert_array_equal(load_volume(renamed).data, v.data)


def test_nifti_truncated(tmp_path):
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32), np.eye(4)),
        tmp_path / "v.nii.gz",
    )
    raw = (tmp_path / "v.nii.gz").read_bytes()
    (tmp_path / "v.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError):
        load_volume(tmp_path / "v.nii.gz")


def _nrrd_data(sizes=(4, 3, 5)) -> np.ndarray:
    return np.arange(np.prod(sizes), dtype="<i2").reshape(sizes[::-1]) - 7  # (z, y, x)


def test_nrrd_detached_format_list_and_attached(tmp_path):
    data = _nrrd_data()
    head = "NRRD0004\n# comment\ntype: short\ndimension: 3\nsizes: 4 3 5\nspacings: 0.5 0.7 2\nendian: little\nencoding: raw\n"
    for z in range(5):
        (tmp_path / f"sl.{z + 1}").write_bytes(data[z].tobytes())
    (tmp_path / "fmt.nhdr").write_text(head + "data file: sl.%d 1 5 1\n")
    (tmp_path / "list.nhdr").write_text(head + "data file: LIST\n" + "".join(f"sl.{z + 1}\n" for z in range(5)))
    (tmp_path / "att.nrrd").write_bytes(head.encode() + b"\n" + data.tobytes())
    (tmp_path / "gz.nrrd").write_bytes(head.replace("raw", "gzip").encode() + b"\n" + gzip.compress(data.tobytes()))
    for name in ("fmt.nhdr", "list.nhdr", "att.nrrd", "gz.nrrd"):
        v = load_volume(tmp_path / name)
        np.testing.assert_array_equal(v.data, data.astype(np.float32))
        assert v.spacing == pytest.approx((2.0, 0.7, 0.5)) and v.space is None
        np.testing.assert_allclose(v.affine @ [1, 1, 1, 1], [0.5, 0.7, 2.0, 1])


def test_nrrd_2d_attached(tmp_path):
    img = np.arange(12, dtype="<f4").reshape(3, 4)
    head = b"NRRD0005\ntype: float\ndimension: 2\nsizes: 4 3\nspacings: 0.5 2\nendian: little\nencoding: raw\n\n"
    (tmp_path / "a.nrrd").write_bytes(head + img.tobytes())
    v = load_volume(tmp_path / "a.nrrd")
    np.testing.assert_array_equal(v.data, img[None])
    assert v.spacing == pytest.approx((1.0, 2.0, 0.5))


def test_nrrd_space_directions(tmp_path):
    data = _nrrd_data()
    (tmp_path / "d.raw").write_bytes(data.tobytes())
    (tmp_path / "d.nhdr").write_text(
        "NRRD0004\ntype: int16\ndimension: 3\nspace: left-posterior-superior\nsizes: 4 3 5\n"
        "space directions: (0.5,0,0) (0,0.7,0) (0,0,2)\nspace origin: (1,2,3)\nendian: little\n"
        "encoding: raw\ndata file: d.raw\n"
    )
    v = load_nrrd(tmp_path / "d.nhdr")
    assert v.space == "LPS"
    np.testing.assert_allclose(v.affine @ [1, 2, 3, 1], [1 + 1.5, 2 + 1.4, 3 + 2, 1])
    np.testing.assert_allclose(lps_to_ras(v.affine) @ [0, 0, 0, 1], [-1, -2, 3, 1])


def test_nrrd_errors(tmp_path):
    (tmp_path / "d.raw").write_bytes(b"\0" * 100)  # needs 4*3*5*2 = 120 bytes
    base = "NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 5\nendian: little\nencoding: {enc}\ndata file: d.raw\n"
    (tmp_path / "short.nhdr").write_text(base.format(enc="raw"))
    with pytest.raises(InputError, match="truncated"):
        load_nrrd(tmp_path / "short.nhdr")
    (tmp_path / "enc.nhdr").write_text(base.format(enc="bzip2"))
    with pytest.raises(InputError, match="encoding"):
        load_nrrd(tmp_path / "enc.nhdr")
    (tmp_path / "miss.nhdr").write_text(base.format(enc="raw").replace("d.raw", "nope.raw"))
    with pytest.raises(InputError, match="does not exist"):
        load_nrrd(tmp_path / "miss.nhdr")
    (tmp_path / "type.nhdr").write_text(base.format(enc="raw").replace("short", "block"))
    with pytest.raises(InputError):
        load_nrrd(tmp_path / "type.nhdr")


def test_load_volume_hdf5_and_unknown(tmp_path):
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f["reconstruction"] = np.ones((2, 4, 4), np.float32)
    v = load_volume(tmp_path / "r.h5", modality="MR")
    assert v.shape == (2, 4, 4) and v.modality == "MR" and v.meta["dataset"] == "reconstruction"
    with h5py.File(tmp_path / "k.h5", "w") as f:
        f["kspace"] = np.ones((2, 1, 4, 4), np.complex64)
    with pytest.raises(InputError, match="k-space"):
        load_volume(tmp_path / "k.h5")
    (tmp_path / "junk.dat").write_bytes(b"hello world" * 100)
    with pytest.raises(InputError, match="not a recognised"):
        load_volume(tmp_path / "junk.dat")
    with pytest.raises(InputError, match="does not exist"):
        load_volume(tmp_path / "missing.nii")


# ============================================================================ real shared data


def _sorted_by_normal(folder: Path) -> list[tuple[float, Path]]:
    items = []
    for p in folder.iterdir():
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        o = np.array(ds.ImageOrientationPatient, float)
        items.append((float(np.array(ds.ImagePositionPatient, float) @ np.cross(o[:3], o[3:])), p))
    return sorted(items)


@pytest.fixture(scope="module")
def t1(shared_data) -> Volume:
    return load_volume(shared_data / "mri" / "vsseg001_t1_dicom")


@pytest.mark.data
def test_real_t1_dicom_series(t1, shared_data):
    folder = shared_data / "mri" / "vsseg001_t1_dicom"
    assert t1.shape == (120, 512, 512) and t1.modality == "MR" and t1.kind == "intensity"
    assert t1.spacing == pytest.approx((1.5, 0.41015625, 0.41015625), rel=1e-4)
    items = _sorted_by_normal(folder)
    normal = np.cross(t1.affine[:3, 2], t1.affine[:3, 1])  # row cosine x column cosine
    normal /= np.linalg.norm(normal)
    pos = np.array([t1.affine @ [k, 0, 0, 1] for k in range(120)])[:, :3] @ normal
    assert np.all(np.diff(pos) > 0)
    np.testing.assert_allclose(pos[[0, -1]], [items[0][0], items[-1][0]], atol=1e-3)
    for k in (0, 57, 119):
        np.testing.assert_array_equal(t1.data[k], pydicom.dcmread(items[k][1]).pixel_array.astype(np.float32))
    # The de-identified subject label in PatientName stays out of the volume.
    label = str(pydicom.dcmread(items[0][1], stop_before_pixels=True).PatientName)
    assert label and label not in repr(t1) and label not in repr(t1.meta)


@pytest.mark.data
def test_real_jpeg2000_ct_series(shared_data):
    folder = shared_data / "ct" / "totalseg_ct_dicom"
    v = load_volume(folder)
    assert v.shape == (20, 512, 512) and v.kind == "hu" and v.modality == "CT"
    assert v.data.min() < -900 and v.data.max() > 500
    assert v.meta["TransferSyntaxUID"] == "1.2.840.10008.1.2.4.90"
    items = _sorted_by_normal(folder)  # positions decrease with file name here: order must flip
    ds = pydicom.dcmread(items[0][1])
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(v.data[0], hu.astype(np.float32))
    assert v.affine[2, 0] == pytest.approx(2.0) and v.affine[2, 3] == pytest.approx(items[0][0])


@pytest.mark.data
def test_real_enhanced_multiframe_ct(shared_data):
    v = load_volume(shared_data / "ct" / "enhanced_ct_multiframe.dcm")
    assert v.shape == (2, 512, 512) and v.kind == "hu"
    assert v.spacing == pytest.approx((10.0, 0.388672, 0.388672))
    assert v.data.min() == pytest.approx(-1024.0)  # RescaleIntercept from the shared functional group
    assert "Perfusion" not in repr(v) + repr(v.meta)


@pytest.mark.data
@pytest.mark.parametrize(
    ("rel", "shape"),
    [
        ("mri/mni152_2009a_t1.nii.gz", (197, 233, 189)),
        ("mri/mr_gd_skullstripped.nii.gz", (176, 188, 144)),
        ("mri/t2w_brain.nii.gz", (224, 224, 60)),
        ("ct/totalseg_ct_aorta.nii.gz", (120, 126, 164)),
        ("ct/totalseg_ct_wholebody_3mm.nii.gz", (122, 101, 112)),
    ],
)
def test_real_nifti(shared_data, rel, shape):
    img = nib.load(shared_data / rel)
    modality = "CT" if rel.startswith("ct/") else None
    v = load_volume(shared_data / rel, modality=modality)
    assert v.shape == shape[::-1] and v.space == "RAS" and v.data.dtype == np.float32
    np.testing.assert_allclose(v.spacing, np.array(img.header.get_zooms()[:3])[::-1], rtol=1e-6)
    np.testing.assert_allclose(v.affine @ [1, 2, 3, 1], img.affine @ [3, 2, 1, 1])
    if modality == "CT":
        assert v.kind == "hu" and v.data.min() < -900


@pytest.mark.data
def test_real_nrrd_headsq(shared_data):
    folder = shared_data / "ct" / "vtk_headsq"
    v = load_volume(folder / "quarter.nhdr")
    assert v.shape == (93, 64, 64) and v.spacing == pytest.approx((1.5, 3.2, 3.2))
    first = np.fromfile(folder / "quarter.1", dtype="<i2").reshape(64, 64)
    np.testing.assert_array_equal(v.data[0], first)
    np.testing.assert_array_equal(v.data[92], np.fromfile(folder / "quarter.93", dtype="<i2").reshape(64, 64))


@pytest.mark.parametrize("data_file", ["{secret}", "../outside/{name}", "LIST\n../outside/{name}", "link.raw",
                                       "../outside/sl.%d 1 1 1"])
def test_a_detached_nrrd_header_cannot_read_files_outside_its_folder(tmp_path, data_file):
    """Issue 23, defect 1: `data file: /etc/passwd` read any local file into an image. Absolute paths, '..',
    LIST and '%' patterns, and symlinks out of the header's folder are refused; files inside still load."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "sl.1"
    secret.write_bytes(bytes(range(64)) * 16)
    inside = tmp_path / "hdr"
    inside.mkdir()
    (inside / "link.raw").symlink_to(secret)
    head = "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 64 16 1\nencoding: raw\n"
    spec = data_file.format(secret=secret, name=secret.name)
    (inside / "x.nhdr").write_text(head + f"data file: {spec}\n\n")
    with pytest.raises(InputError, match="inside the header's folder"):
        load_volume(inside / "x.nhdr")
    (inside / "ok.raw").write_bytes(secret.read_bytes())
    (inside / "ok.nhdr").write_text(head + "data file: ok.raw\n\n")
    assert load_volume(inside / "ok.nhdr").data.shape == (1, 16, 64)


@pytest.mark.parametrize("spec", ["ok.raw", "LIST\nok.raw", "ok.%d 1 1 1"])
def test_a_detached_nrrd_header_given_by_a_relative_path_loads(tmp_path, monkeypatch, spec):
    """A header named by a relative path with a folder part (``../d1/hdr/x.nhdr``) must load its own data files.
    The folder check used to join the folder twice (``../d1/hdr/../d1/hdr/ok.raw``) and refused every such header,
    the shared VTK head CT among them (``benchmarks/gpu_prepare.sh``)."""
    inside = tmp_path / "d1" / "hdr"
    inside.mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    raw = bytes(range(64)) * 16
    (inside / "ok.raw").write_bytes(raw)
    (inside / "ok.1").write_bytes(raw)
    head = "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 64 16 1\nencoding: raw\n"
    (inside / "x.nhdr").write_text(head + f"data file: {spec}\n\n")
    monkeypatch.chdir(work)
    v = load_volume(Path("../d1/hdr/x.nhdr"))
    assert v.data.shape == (1, 16, 64)
    np.testing.assert_array_equal(v.data[0].ravel(), np.frombuffer(raw, dtype=np.uint8))
