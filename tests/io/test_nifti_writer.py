"""NIfTI writer: same voxels at the same world coordinates after load_nifti; content detection."""

from __future__ import annotations

import gzip
import zipfile

import nibabel as nib
import numpy as np
import pytest

from medrecon.errors import InputError
from medrecon.io.detect import detect_format
from medrecon.io.dicom_writer import write_dicom_series
from medrecon.io.nifti_writer import write_nifti
from medrecon.io.volumes import load_dicom, load_nifti, lps_to_ras


def _oblique(spacing=(2.0, 0.8, 1.1), origin=(10.0, -20.0, 35.0), flip_slices=False) -> np.ndarray:
    rot, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((3, 3)))
    affine = np.eye(4)
    affine[:3, :3] = rot * np.asarray(spacing)
    if flip_slices:
        affine[:3, 0] *= -1
    affine[:3, 3] = origin
    return affine


def _world(affine: np.ndarray, index) -> np.ndarray:
    return (affine @ [*index, 1.0])[:3]


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("flip", [False, True])
def test_synthetic_ras_round_trip(tmp_path, suffix, flip):
    data = np.random.default_rng(0).standard_normal((4, 7, 6)).astype(np.float32)
    affine = _oblique(flip_slices=flip)
    path = write_nifti(tmp_path / f"v{suffix}", data, affine, "RAS")
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"v{suffix}"]
    vol = load_nifti(path)
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    assert vol.spacing == pytest.approx((2.0, 0.8, 1.1), abs=1e-5)
    img = nib.load(path)
    assert img.shape == (6, 7, 4)  # NIfTI (i, j, k) = (col, row, slice)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1


def test_lps_volume_lands_at_same_ras_coordinate(tmp_path):
    data = np.arange(3 * 5 * 4, dtype=np.float32).reshape(3, 5, 4)
    lps = _oblique()
    vol = load_nifti(write_nifti(tmp_path / "v.nii.gz", data, lps, "LPS"))
    np.testing.assert_allclose(vol.affine, lps_to_ras(lps), atol=1e-5)
    idx = (2, 3, 1)
    assert vol.data[idx] == data[idx]
    np.testing.assert_allclose(_world(vol.affine, idx), _world(lps_to_ras(lps), idx), atol=1e-4)


def test_dicom_series_to_nifti_same_ras(tmp_path):
    rng = np.random.default_rng(2)
    data = rng.uniform(-1000, 1000, (4, 9, 7)).astype(np.float32)
    lps = _oblique(spacing=(3.0, 0.5, 0.75))
    # DICOM IOP must be orthonormal with slices along +-normal: _oblique is a rotation times spacing
    write_dicom_series(tmp_path / "dcm", data, lps, "CT", None, "ct", "medrecon")
    dcm = load_dicom(tmp_path / "dcm")
    nii = load_nifti(write_nifti(tmp_path / "ct.nii.gz", dcm.data, dcm.affine, dcm.space), modality="CT")
    np.testing.assert_array_equal(nii.data, dcm.data)
    np.testing.assert_allclose(nii.affine, dcm.ras_affine, atol=1e-4)
    for idx in [(0, 0, 0), (3, 8, 6), (1, 4, 2)]:
        assert nii.data[idx] == dcm.data[idx]
        np.testing.assert_allclose(_world(nii.affine, idx), _world(dcm.ras_affine, idx), atol=1e-3)


def test_no_space_and_bad_inputs(tmp_path):
    data = np.ones((2, 3, 4), np.float32)
    vol = load_nifti(write_nifti(tmp_path / "v.nii", data, np.diag([2.0, 3.0, 4.0, 1.0]), None))
    assert int(nib.load(tmp_path / "v.nii").header["sform_code"]) == 0
    np.testing.assert_array_equal(vol.data, data)
    assert vol.spacing == pytest.approx((2.0, 3.0, 4.0))
    with pytest.raises(InputError, match="nii"):
        write_nifti(tmp_path / "v.img", data, np.eye(4), "RAS")
    with pytest.raises(InputError, match="singular"):
        write_nifti(tmp_path / "w.nii", data, np.zeros((4, 4)), "RAS")
    with pytest.raises(InputError, match="space"):
        write_nifti(tmp_path / "w.nii", data, np.eye(4), "LAS")
    with pytest.raises(InputError, match="shape"):
        write_nifti(tmp_path / "w.nii", data[0], np.eye(4), "RAS")
    assert not (tmp_path / "w.nii").exists()


@pytest.mark.data
def test_shared_nifti_round_trip(shared_data, tmp_path):
    src = load_nifti(shared_data / "mri" / "t2w_brain.nii.gz")
    vol = load_nifti(write_nifti(tmp_path / "t2.nii.gz", src.data, src.affine, src.space))
    np.testing.assert_array_equal(vol.data, src.data)
    np.testing.assert_allclose(vol.affine, src.affine, atol=1e-4)
    assert detect_format(shared_data / "mri" / "t2w_brain.nii.gz") == "nifti"


@pytest.mark.data
def test_real_dicom_to_nifti_same_ras(shared_data, tmp_path):
    dcm = load_dicom(shared_data / "ct" / "totalseg_ct_dicom")
    nii = load_nifti(write_nifti(tmp_path / "ct.nii.gz", dcm.data, dcm.affine, dcm.space))
    np.testing.assert_array_equal(nii.data, dcm.data)
    for idx in [(0, 0, 0), (19, 511, 511), (7, 100, 300)]:
        np.testing.assert_allclose(_world(nii.affine, idx), _world(dcm.ras_affine, idx), atol=1e-3)


# ----------------------------------------------------------------------------- detect_format


def test_detect_by_content(tmp_path):
    data = np.ones((2, 3, 4), np.float32)
    write_nifti(tmp_path / "a.nii.gz", data, np.eye(4), "RAS")
    (tmp_path / "renamed.bin").write_bytes((tmp_path / "a.nii.gz").read_bytes())
    write_nifti(tmp_path / "b.nii", data, np.eye(4), "RAS")
    (tmp_path / "c.nrrd").write_bytes(b"NRRD0004\ntype: float\ndimension: 1\nsizes: 1\nencoding: raw\n\n\0\0\0\0")
    np.save(tmp_path / "d.npy", data)
    np.savez(tmp_path / "e.npz", a=data)
    assert [detect_format(tmp_path / n) for n in ("a.nii.gz", "renamed.bin", "b.nii", "c.nrrd", "d.npy", "e.npz")] == [
        "nifti", "nifti", "nifti", "nrrd", "npy", "npz"
    ]  # fmt: skip
    (tmp_path / "junk.nii").write_bytes(b"hello world" * 100)
    (tmp_path / "junk.gz").write_bytes(gzip.compress(b"not nifti" * 100))
    (tmp_path / "empty.npy").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as z:
        z.writestr("readme.txt", "x")
    for name in ("junk.nii", "junk.gz", "empty.npy", "other.npz", "missing.nii"):
        with pytest.raises(InputError):
            detect_format(tmp_path / name)
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="no DICOM"):
        detect_format(tmp_path / "folder")


def test_detect_hdf5_kinds(tmp_path):
    import h5py

    from medrecon.io.fastmri import write_fastmri_kspace, write_reconstruction

    write_fastmri_kspace(tmp_path / "k.h5", np.ones((1, 2, 4, 4), np.complex64))
    write_reconstruction(tmp_path / "r.h5", np.ones((1, 4, 4), np.float32))
    with h5py.File(tmp_path / "raw.dat", "w") as f:  # ISMRMRD layout under a misleading name
        f.create_group("dataset").create_dataset("xml", data=[b"<ismrmrdHeader/>"])
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["sinogram"] = np.zeros((3, 5), np.float32)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["something"] = np.zeros(3)
    kinds = [detect_format(tmp_path / n) for n in ("k.h5", "r.h5", "raw.dat", "s.h5")]
    assert kinds == ["fastmri", "fastmri", "ismrmrd", "ct-sinogram"]
    with pytest.raises(InputError, match="HDF5"):
        detect_format(tmp_path / "other.h5")
