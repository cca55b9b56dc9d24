"""fastMRI HDF5 reading/writing and atomic writes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from medrecon.errors import InputError
from medrecon.io.atomic import atomic_write, temporary_name
from medrecon.io.fastmri import (
    minimal_ismrmrd_header,
    read_fastmri,
    write_fastmri_kspace,
    write_reconstruction,
)

NS = 'xmlns="http://www.ismrm.org/ISMRMRD"'


def _kspace(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _fastmri_header(ns=NS, enc=(640, 372), rec=(320, 320), center=180, maximum=359):
    """Shaped like a real fastMRI knee header (only the fields fastMRI reads, plus noise)."""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader {ns}><studyInformation><studyTime>10:00:00</studyTime></studyInformation>
<encoding><encodedSpace><matrixSize><x>{enc[0]}</x><y>{enc[1]}</y><z>1</z></matrixSize></encodedSpace>
<reconSpace><matrixSize><x>{rec[0]}</x><y>{rec[1]}</y><z>1</z></matrixSize></reconSpace>
<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{maximum}</maximum>
<center>{center}</center></kspace_encoding_step_1></encodingLimits></encoding></ismrmrdHeader>"""


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


# ----------------------------------------------------------------------------- atomic_write


def test_temporary_name_keeps_suffix(tmp_path):
    t = temporary_name(tmp_path / "brain.nii.gz")
    assert t.parent == tmp_path and t.name.startswith(".brain.nii.gz.tmp-") and t.name.endswith(".nii.gz")
    assert temporary_name(tmp_path / "r.h5").name.endswith(".h5")
    assert temporary_name(tmp_path / "r.h5") != temporary_name(tmp_path / "r.h5")


def test_atomic_write_success_and_replace(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_write(target) as tmp:
        assert tmp != target
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # the real file is untouched until success
    assert target.read_bytes() == b"new" and not _leftovers(tmp_path)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_cleans_up_on_exception(tmp_path, exc):
    target = tmp_path / "out.h5"
    with pytest.raises(exc), atomic_write(target) as tmp:
        tmp.write_bytes(b"partial")
        raise exc()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"), atomic_write(tmp_path / "missing" / "x.h5"):
        pass
    with pytest.raises(InputError, match="nothing was written"), atomic_write(tmp_path / "x.h5"):
        pass
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- round trips


def test_multicoil_round_trip(tmp_path):
    k = _kspace((2, 3, 24, 16))
    target = np.random.default_rng(1).random((2, 12, 10)).astype(np.float32)
    mask = np.zeros(16, bool)
    mask[6:10] = True
    extra = {"source_affine": np.eye(4) * 2.0, "slice_indices": np.array([4, 5]), "source_modality": "MR"}
    path = write_fastmri_kspace(
        tmp_path / "f.h5",
        k,
        target=target,
        mask=mask,
        attrs={"acquisition": "CORPD_FBK", "max": 1.5, "acceleration": 4},
        extra=extra,
    )
    assert not _leftovers(tmp_path)
    v = read_fastmri(path)
    np.testing.assert_array_equal(v.kspace, k)
    assert v.kspace.dtype == np.complex64 and v.multicoil and v.num_coils == 3 and v.num_slices == 2
    np.testing.assert_array_equal(v.target, target)
    assert v.target_key == "reconstruction_rss"
    np.testing.assert_array_equal(v.mask, mask)
    assert v.mask.dtype == bool
    assert v.recon_size == (12, 10)  # minimal header takes the target's size
    assert v.padding == (0, 16) and v.encoded_size == (24, 16)
    assert v.attrs == {"acquisition": "CORPD_FBK", "max": 1.5, "acceleration": 4}
    np.testing.assert_array_equal(v.extra["source_affine"], np.eye(4) * 2.0)
    np.testing.assert_array_equal(v.extra["slice_indices"], [4, 5])
    assert v.extra["source_modality"] == "MR"
    assert "FastMRIVolume(kspace=(2, 3, 24, 16)" in repr(v)
    part = read_fastmri(path, slices=slice(1, 2))
    np.testing.assert_array_equal(part.kspace, k[1:2])
    np.testing.assert_array_equal(part.target, target[1:2])


def test_singlecoil_gets_coil_axis(tmp_path):
    k = _kspace((3, 20, 18)).astype(np.complex128)
    write_fastmri_kspace(tmp_path / "s.h5", k, target=np.ones((3, 20, 18)))
    v = read_fastmri(tmp_path / "s.h5")
    assert v.kspace.shape == (3, 1, 20, 18) and v.kspace.dtype == np.complex64 and not v.multicoil
    assert v.target_key == "reconstruction_esc" and v.mask is None


def test_write_reconstruction_round_trip(tmp_path):
    recon = np.random.default_rng(2).random((2, 8, 8))
    std = recon * 0.1
    write_reconstruction(tmp_path / "r.h5", recon, std=std, attrs={"sampler": "dps", "nfe": 1000})
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert f["reconstruction"].dtype == np.float32 and f["std"].dtype == np.float32
        np.testing.assert_allclose(f["reconstruction"][()], recon, rtol=1e-6)
        np.testing.assert_allclose(f["std"][()], std, rtol=1e-6)
        assert f.attrs["sampler"] == "dps" and f.attrs["nfe"] == 1000
    assert not _leftovers(tmp_path)
    write_reconstruction(tmp_path / "plain.h5", recon)
    with h5py.File(tmp_path / "plain.h5", "r") as f:
        assert set(f.keys()) == {"reconstruction"}


def test_write_errors(tmp_path):
    with pytest.raises(InputError):
        write_reconstruction(tmp_path / "r.h5", np.ones((8, 8)))
    with pytest.raises(InputError):
        write_reconstruction(tmp_path / "r.h5", np.ones((1, 8, 8)), std=np.ones((1, 4, 4)))
    with pytest.raises(InputError, match="identify"):
        write_reconstruction(tmp_path / "r.h5", np.ones((1, 8, 8)), attrs={"patient_id": "x"})
    k = _kspace((1, 2, 8, 8))
    with pytest.raises(InputError):
        write_fastmri_kspace(tmp_path / "k.h5", k.real)
    with pytest.raises(InputError):
        write_fastmri_kspace(tmp_path / "k.h5", k, mask=np.ones(7, bool))
    with pytest.raises(InputError):
        write_fastmri_kspace(tmp_path / "k.h5", k, target=np.ones((2, 8, 8)))
    with pytest.raises(InputError, match="source_"):
        write_fastmri_kspace(tmp_path / "k.h5", k, extra={"kspace": np.ones(2)})
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- header


@pytest.mark.parametrize("ns", [NS, ""])
def test_header_recon_size_and_padding(tmp_path, ns):
    k = _kspace((1, 1, 64, 372))
    write_fastmri_kspace(tmp_path / "h.h5", k, header_xml=_fastmri_header(ns))
    v = read_fastmri(tmp_path / "h.h5")
    assert v.recon_size == (320, 320)
    # fastMRI: left = enc_y // 2 - center = 186 - 180; right = left + maximum + 1.
    assert v.padding == (6, 366) and v.encoded_size == (640, 372)


def test_recon_size_fallbacks(tmp_path):
    write_fastmri_kspace(tmp_path / "a.h5", _kspace((1, 330, 320)), header_xml="<ismrmrdHeader/>")
    assert read_fastmri(tmp_path / "a.h5").recon_size == (320, 320)
    write_fastmri_kspace(tmp_path / "b.h5", _kspace((1, 330, 200)), header_xml="<ismrmrdHeader/>")
    v = read_fastmri(tmp_path / "b.h5")
    assert v.recon_size == (330, 200) and v.padding is None
    write_fastmri_kspace(
        tmp_path / "c.h5", _kspace((1, 400, 400)), target=np.ones((1, 300, 310)), header_xml="<ismrmrdHeader/>"
    )
    assert read_fastmri(tmp_path / "c.h5").recon_size == (300, 310)


def test_minimal_header_parses():
    xml = minimal_ismrmrd_header((640, 368), (320, 320), num_slices=30)
    assert "<reconSpace><matrixSize><x>320</x>" in xml and "<center>184</center>" in xml


def test_unsafe_or_broken_header(tmp_path):
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><ismrmrdHeader>&b;</ismrmrdHeader>'
    )
    write_fastmri_kspace(tmp_path / "x.h5", _kspace((1, 8, 8)), header_xml=bomb)
    with pytest.raises(InputError, match="XML"):
        read_fastmri(tmp_path / "x.h5")
    write_fastmri_kspace(tmp_path / "y.h5", _kspace((1, 8, 8)), header_xml="<ismrmrdHeader><enc")
    with pytest.raises(InputError, match="XML"):
        read_fastmri(tmp_path / "y.h5")


# ----------------------------------------------------------------------------- errors & privacy


def test_patient_id_never_returned(tmp_path):
    secret = "PLANTED-PATIENT-7731"
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["kspace"] = _kspace((1, 2, 8, 8))
        f.attrs["patient_id"] = secret
        f.attrs["PatientName"] = secret
        f.attrs["acquisition"] = "AXT2"
        f.attrs["norm"] = 0.5
    v = read_fastmri(tmp_path / "p.h5")
    assert v.attrs == {"acquisition": "AXT2", "norm": 0.5}
    assert secret not in repr(v) and secret not in repr(v.attrs) and secret not in repr(v.extra)


def test_not_hdf5(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"\x00" * 2048)
    with pytest.raises(InputError, match="not an HDF5"):
        read_fastmri(tmp_path / "x.h5")
    with pytest.raises(InputError, match="does not exist"):
        read_fastmri(tmp_path / "none.h5")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"reconstruction_rss": np.ones((1, 4, 4), np.float32)}, "no 'kspace'"),
        ({"kspace": np.ones((8, 8), np.complex64)}, "shape"),
        ({"kspace": np.ones((1, 1, 1, 8, 8), np.complex64)}, "shape"),
        ({"kspace": np.ones((1, 2, 8, 8), np.float32)}, "dtype"),
        ({"kspace": np.ones((1, 2, 8, 8), np.complex64), "mask": np.ones(5, bool)}, "mask"),
        (
            {"kspace": np.ones((2, 2, 8, 8), np.complex64), "reconstruction_rss": np.ones((3, 4, 4))},
            "reconstruction_rss",
        ),
    ],
)
def test_invalid_content(tmp_path, content, match):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        for key, value in content.items():
            f[key] = value
    with pytest.raises(InputError, match=match):
        read_fastmri(tmp_path / "bad.h5")


def test_truncated_file(tmp_path):
    write_fastmri_kspace(tmp_path / "t.h5", _kspace((4, 4, 64, 64)))
    raw = (tmp_path / "t.h5").read_bytes()
    (tmp_path / "t.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError):
        read_fastmri(tmp_path / "t.h5")


def test_recon_pixel_size_from_the_header(tmp_path):
    xml = minimal_ismrmrd_header((640, 368), (320, 320)).replace(
        "<reconSpace><matrixSize><x>320</x><y>320</y><z>1</z></matrixSize><fieldOfView_mm><x>320</x><y>320</y>",
        "<reconSpace><matrixSize><x>320</x><y>320</y><z>1</z></matrixSize><fieldOfView_mm><x>220</x><y>240</y>")
    write_fastmri_kspace(tmp_path / "a.h5", _kspace((1, 64, 48)), header_xml=xml)
    assert read_fastmri(tmp_path / "a.h5").pixel_mm == pytest.approx((0.6875, 0.75))
    write_fastmri_kspace(tmp_path / "b.h5", _kspace((1, 64, 48)), header_xml="<ismrmrdHeader/>")
    assert read_fastmri(tmp_path / "b.h5").pixel_mm is None
    nan = xml.replace("<x>220</x>", "<x>nan</x>")
    write_fastmri_kspace(tmp_path / "c.h5", _kspace((1, 64, 48)), header_xml=nan)
    assert read_fastmri(tmp_path / "c.h5").pixel_mm is None
