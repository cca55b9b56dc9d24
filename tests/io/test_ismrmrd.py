"""ISMRMRD raw data: round trip against fastMRI-layout k-space, noise pre-whitening, flags, privacy."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

ismrmrd = pytest.importorskip("ismrmrd")

from medrecon.errors import InputError
from medrecon.io.fastmri import read_fastmri, write_fastmri_kspace
from medrecon.io.ismrmrd_io import read_ismrmrd, write_ismrmrd
from operators.coils import birdcage_maps, rss
from operators.fft import fft2c, ifft2c

S, C, H, W = 2, 4, 32, 24
PLANTED = {"patientName": "Qwxyz^Plantedsubject", "patientID": "PLANTED-ID-7731", "patientBirthdate": "1901-02-03"}


def _phantom_kspace(seed: int = 0) -> np.ndarray:
    """Smooth random complex phantom (sum of Gaussian blobs) x birdcage coils, in k-space."""
    rng = np.random.default_rng(seed)
    y, x = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    img = np.zeros((S, H, W), np.complex128)
    for s in range(S):
        for _ in range(5):
            cy, cx, r = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(0.15, 0.4)
            img[s] += rng.uniform(0.5, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / r**2)
        img[s] *= np.exp(1j * (0.5 * x + 0.3 * y))  # smooth phase
    maps = birdcage_maps(C, (H, W), dtype=torch.complex128)
    return fft2c(maps[None] * torch.from_numpy(img)[:, None]).numpy().astype(np.complex64)


def _mixing(seed: int = 1) -> np.ndarray:
    """A lower-triangular coil-noise mixing matrix A (noise covariance A A^H, far from identity)."""
    rng = np.random.default_rng(seed)
    a = np.tril(rng.standard_normal((C, C)) + 1j * rng.standard_normal((C, C))) * 0.4
    a[np.diag_indices(C)] = rng.uniform(0.5, 2.0, C)
    return a


def _white(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)


def _append(path, data, flag=None, slice_=0, e1=0, **counters) -> None:
    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, dtype=np.complex64))
    acq.center_sample, acq.sample_time_us = H // 2, 5.0
    acq.idx.slice, acq.idx.kspace_encode_step_1 = slice_, e1
    for key, value in counters.items():
        setattr(acq.idx, key, value)
    if flag is not None:
        acq.set_flag(flag)
    with ismrmrd.Dataset(str(path), "dataset", mode="a") as dset:
        dset.append_acquisition(acq)


def _plant_subject(path) -> None:
    with h5py.File(path, "r") as f:
        xml = f["dataset/xml"][0].decode()
    subject = "<subjectInformation>" + "".join(f"<{k}>{v}</{k}>" for k, v in PLANTED.items()) + "</subjectInformation>"
    xml = xml.replace('ISMRMRD">', 'ISMRMRD">' + subject, 1)
    with ismrmrd.Dataset(str(path), "dataset", mode="a") as dset:
        dset.write_xml_header(xml.encode())


def _no_secrets(text: str) -> None:
    for value in [*PLANTED.values(), "Plantedsubject", "Qwxyz"]:
        assert value not in text


def test_round_trip_matches_fastmri_twin(tmp_path):
    kspace = _phantom_kspace()
    mask = np.zeros(W, bool)
    mask[::3] = True
    mask[W // 2 - 3 : W // 2 + 3] = True
    write_ismrmrd(tmp_path / "raw.h5", kspace, mask, recon_size=(20, 20))
    write_fastmri_kspace(tmp_path / "twin.h5", kspace * mask + 0.0, mask=mask, recon_size=(20, 20))
    raw, twin = read_ismrmrd(tmp_path / "raw.h5"), read_fastmri(tmp_path / "twin.h5")
    assert raw.kspace.shape == (S, C, H, W) and raw.kspace.dtype == np.complex64
    np.testing.assert_array_equal(raw.mask, mask)
    np.testing.assert_array_equal(raw.kspace, twin.kspace)
    assert raw.recon_size == twin.recon_size == (20, 20) and raw.padding == twin.padding == (0, W)
    assert raw.encoded_size == (H, W) and raw.attrs["noise_whitened"] is False
    zf_raw = rss(ifft2c(torch.from_numpy(raw.kspace)))
    zf_twin = rss(ifft2c(torch.from_numpy(twin.kspace)))
    torch.testing.assert_close(zf_raw, zf_twin, rtol=0, atol=0)
    # fully sampled: the image is the coil-combined phantom, so the layout is truly fastMRI's
    full = read_ismrmrd(write_ismrmrd(tmp_path / "full.h5", kspace)).kspace
    np.testing.assert_array_equal(full, kspace)


def test_header_is_schema_valid(tmp_path):
    write_ismrmrd(tmp_path / "raw.h5", _phantom_kspace(), recon_size=(20, 20))
    with h5py.File(tmp_path / "raw.h5", "r") as f:
        header = ismrmrd.xsd.CreateFromDocument(f["dataset/xml"][0])
    enc = header.encoding[0]
    assert header.acquisitionSystemInformation.receiverChannels == C
    assert (enc.encodedSpace.matrixSize.x, enc.encodedSpace.matrixSize.y) == (H, W)
    assert (enc.reconSpace.matrixSize.x, enc.reconSpace.matrixSize.y) == (20, 20)
    assert enc.encodingLimits.kspace_encoding_step_1.maximum == W - 1
    assert enc.encodingLimits.slice.maximum == S - 1
    # the ismrmrd package's own reader sees the acquisitions we wrote
    with ismrmrd.Dataset(str(tmp_path / "raw.h5"), "dataset", mode="r") as dset:
        acq = dset.read_acquisition(W + 3)
    assert (acq.idx.slice, acq.idx.kspace_encode_step_1, acq.center_sample) == (1, 3, H // 2)
    np.testing.assert_array_equal(acq.data, _phantom_kspace()[1, :, :, 3])


def test_white_noise_scans_leave_kspace_unchanged_within_tolerance(tmp_path):
    kspace = _phantom_kspace()
    rng = np.random.default_rng(2)
    noise = _white(rng, (C, 8192))
    write_ismrmrd(tmp_path / "raw.h5", kspace, noise=noise)
    vol = read_ismrmrd(tmp_path / "raw.h5")
    assert vol.attrs["noise_whitened"] is True and vol.attrs["noise_samples"] == 8192
    rel = np.linalg.norm(vol.kspace - kspace) / np.linalg.norm(kspace)
    assert rel < 0.05  # covariance estimated from 8192 samples: ~1/sqrt(N) per entry
    # exactly L^-1 y with L the Cholesky factor of the (written) noise covariance
    psi = noise.astype(np.complex64).astype(np.complex128)
    chol = np.linalg.cholesky(psi @ psi.conj().T / psi.shape[1])
    expected = np.einsum("ij,sjhw->sihw", np.linalg.inv(chol), kspace)
    np.testing.assert_allclose(vol.kspace, expected, atol=1e-4 * np.abs(kspace).max())


def test_correlated_noise_is_whitened_to_identity(tmp_path):
    rng = np.random.default_rng(3)
    a = _mixing()
    noise = a @ _white(rng, (C, 8192))
    # k-space that is pure noise from the same coil distribution (e.g. empty FOV)
    data = np.einsum("ij,sjhw->sihw", a, _white(rng, (S, C, H, W))).astype(np.complex64)
    write_ismrmrd(tmp_path / "raw.h5", data, noise=noise)

    def coil_cov(k: np.ndarray) -> np.ndarray:
        flat = k.transpose(1, 0, 2, 3).reshape(C, -1).astype(np.complex128)
        return flat @ flat.conj().T / flat.shape[1]

    before = coil_cov(read_ismrmrd(tmp_path / "raw.h5", whiten=False).kspace)
    after = coil_cov(read_ismrmrd(tmp_path / "raw.h5").kspace)
    assert np.abs(before - np.eye(C)).max() > 0.5
    np.testing.assert_allclose(after, np.eye(C), atol=0.08)


def test_noise_flagged_acquisition_is_not_placed(tmp_path):
    kspace = _phantom_kspace()
    mask = np.ones(W, bool)
    mask[5] = False
    write_ismrmrd(tmp_path / "raw.h5", kspace, mask)
    _append(tmp_path / "raw.h5", np.full((C, H), 1e6), ismrmrd.ACQ_IS_NOISE_MEASUREMENT, e1=5)
    _append(tmp_path / "raw.h5", np.full((C, H), 1e6), ismrmrd.ACQ_IS_NAVIGATION_DATA, e1=5)
    _append(tmp_path / "raw.h5", np.full((C, H), 1e6), ismrmrd.ACQ_IS_PHASECORR_DATA, e1=5)
    vol = read_ismrmrd(tmp_path / "raw.h5", whiten=False)
    assert not vol.mask[5] and vol.attrs["skipped_acquisitions"] == 2 and vol.attrs["noise_samples"] == H
    np.testing.assert_array_equal(vol.kspace, kspace * mask + 0.0)


def test_calibration_lines_used_and_averages_averaged(tmp_path):
    kspace = _phantom_kspace()
    mask = np.zeros(W, bool)
    mask[::2] = True
    write_ismrmrd(tmp_path / "raw.h5", kspace, mask)
    _append(tmp_path / "raw.h5", kspace[0, :, :, 3], ismrmrd.ACQ_IS_PARALLEL_CALIBRATION, e1=3)
    _append(tmp_path / "raw.h5", 3 * kspace[1, :, :, 4], slice_=1, e1=4, average=1)  # second average
    vol = read_ismrmrd(tmp_path / "raw.h5")
    assert vol.mask[3] and vol.attrs["max_averages"] == 2
    np.testing.assert_array_equal(vol.kspace[0, :, :, 3], kspace[0, :, :, 3])
    np.testing.assert_allclose(vol.kspace[1, :, :, 4], 2 * kspace[1, :, :, 4], rtol=1e-6, atol=1e-6)


def test_subject_fields_never_leak(tmp_path):
    write_ismrmrd(tmp_path / "raw.h5", _phantom_kspace())
    _plant_subject(tmp_path / "raw.h5")
    with h5py.File(tmp_path / "raw.h5", "r") as f:
        assert PLANTED["patientID"].encode() in f["dataset/xml"][0]  # really planted
    vol = read_ismrmrd(tmp_path / "raw.h5")
    _no_secrets(repr(vol) + repr(vol.attrs) + str(vol.extra))
    # an error raised after the header was parsed
    _append(tmp_path / "raw.h5", np.ones((C, H)), e1=2, contrast=1)
    with pytest.raises(InputError) as err:
        read_ismrmrd(tmp_path / "raw.h5")
    _no_secrets(str(err.value))
    assert "\n" not in str(err.value)
    # a header that is not XML at all but holds the planted values
    with ismrmrd.Dataset(str(tmp_path / "raw.h5"), "dataset", mode="a") as dset:
        dset.write_xml_header(f"<ismrmrdHeader><patientName>{PLANTED['patientName']}</ismrmrdHeader".encode())
    with pytest.raises(InputError) as err:
        read_ismrmrd(tmp_path / "raw.h5")
    _no_secrets(str(err.value))


def test_not_ismrmrd_and_bad_inputs(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not an HDF5"):
        read_ismrmrd(tmp_path / "x.h5")
    write_fastmri_kspace(tmp_path / "fm.h5", _phantom_kspace())
    with pytest.raises(InputError, match="not an ISMRMRD"):
        read_ismrmrd(tmp_path / "fm.h5")
    with pytest.raises(InputError, match="mask"):
        write_ismrmrd(tmp_path / "y.h5", _phantom_kspace(), np.ones(3, bool))
    assert not (tmp_path / "y.h5").exists()
