"""Clinical fan-beam geometry in the acquisition model (issue 21): scanner presets, CtScan's fan settings and errors,
the benchmark's fan-beam suite."""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch

from medrecon.acquisition.ct import FAN_KEYS, CtScan
from medrecon.acquisition.scanners import SCANNERS
from medrecon.errors import InputError
from operators import FanBeamCT, FanBeamCurvedCT, FanTruncationWarning
from operators.testing import check_operator


@pytest.fixture(autouse=True)
def _no_sparse(monkeypatch):
    """Operators here project once at most: skip building the cached sparse matrix."""
    monkeypatch.setenv("MEDRECON_CT_SPARSE_MAX_GB", "0")


def test_presets_are_documented_and_consistent():
    assert {"siemens-definition", "ge-lightspeed", "cbct-flat"} <= set(SCANNERS)
    for p in SCANNERS.values():
        assert p.sdd_mm > p.sid_mm > 0 and p.detector_pitch_mm > 0 and p.detectors > 0
        assert p.detector in ("flat", "curved") and p.source and p.summary
    siemens = SCANNERS["siemens-definition"]
    assert (siemens.sid_mm, siemens.sdd_mm, siemens.detectors, siemens.detector) == (595.0, 1085.6, 736, "curved")
    assert siemens.fan_angle_deg == pytest.approx(49.9, abs=0.1) and siemens.fov_mm == pytest.approx(502, abs=1)
    ge = SCANNERS["ge-lightspeed"]
    assert (ge.sid_mm, ge.sdd_mm, ge.detectors, ge.detector) == (541.0, 949.0, 888, "curved")
    assert ge.fov_mm == pytest.approx(499, abs=1)
    assert SCANNERS["cbct-flat"].detector == "flat" and SCANNERS["cbct-flat"].fov_mm < 300


@pytest.mark.parametrize("name", sorted(SCANNERS))
def test_every_preset_builds_its_projector(name):
    """A 500 mm body field on 64 px: the preset's mm, whatever the grid; the flat panel's ~26 cm fan truncates."""
    preset = SCANNERS[name]
    scan = CtScan("fan", 12, pixel_mm=500 / 64, scanner=name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        A = scan.operator((64, 64))
    assert isinstance(A, FanBeamCurvedCT if preset.detector == "curved" else FanBeamCT)
    g = A.geometry()
    assert (g["source_distance"], g["detector_distance"], g["n_detectors"], g["detector_spacing"]) == \
        (preset.sid_mm, preset.sdd_mm, preset.detectors, preset.detector_pitch_mm)
    assert 2 * A.fov_radius == pytest.approx(preset.fov_mm)
    truncated = [w for w in caught if issubclass(w.category, FanTruncationWarning)]
    assert bool(truncated) == (preset.fov_mm < 500), [str(w.message) for w in caught]


def test_clinical_geometry_is_fixed_in_mm_whatever_the_grid():
    """--size resamples the image over the same field: the detector, distances and angles do not move."""
    geoms = [CtScan("fan", 30, pixel_mm=400 / n, scanner="siemens-definition", scan="short").operator((n, n)).geometry()
             for n in (40, 80)]
    for g in geoms:
        del g["image_shape"], g["pixel_size"]
    assert geoms[0] == geoms[1]


def test_flags_override_the_preset_and_build_exact_operators():
    scan = CtScan("fan", 9, pixel_mm=2.0, scanner="siemens-definition", detectors=300, detector="flat", scan="short")
    fan = scan.fan_geometry()
    assert fan == {"detector": "flat", "scan": "short", "sid_mm": 595.0, "sdd_mm": 1085.6,
                   "detector_pitch_mm": 1.2858, "detectors": 300, "scanner": "siemens-definition"}
    A = scan.operator((48, 48))
    assert isinstance(A, FanBeamCT) and A.short_scan and A.n_detectors == 300
    assert A.scan_range == pytest.approx(math.pi + 2 * math.atan(150 * 1.2858 / 1085.6))
    check_operator(A.double(), dtype=torch.float64)
    custom = CtScan("fan", 9, pixel_mm=2.0, sid_mm=300, sdd_mm=500, detector_pitch_mm=1.0, detectors=200,
                    detector="curved").operator((48, 48))
    assert isinstance(custom, FanBeamCurvedCT) and not custom.short_scan and custom.source_distance == 300.0


def test_original_fan_rule_is_unchanged():
    """No clinical setting: the image-scaled flat fan of before (source 4, detector 6 image widths), full scan."""
    n, pix = 32, 1.2
    A = CtScan("fan", 10, pixel_mm=pix).operator((n, n))
    ref = FanBeamCT((n, n), 10, 4 * pix * n, 6 * pix * n, int(1.5 * n), 1.5 * pix, pix)
    assert type(A) is FanBeamCT and A.geometry() == ref.geometry() and not A.short_scan
    assert CtScan("fan", 10).fan_geometry() == {"detector": "flat", "scan": "full"}
    assert CtScan("parallel", 10).fan_geometry() is None
    assert isinstance(CtScan("fan", 10, pixel_mm=pix, detector="curved").operator((n, n)), FanBeamCurvedCT)
    assert CtScan("fan", 10, pixel_mm=pix, scan="short").operator((n, n)).short_scan


@pytest.mark.parametrize("kw, match", [
    (dict(scanner="siemens-definition"), "describe a fan beam: add --geometry fan"),
    (dict(scan="short"), "--scan describe a fan beam"),
    (dict(geometry="fan", scanner="toshiba"), "--scanner must be one of"),
    (dict(geometry="fan", detector="round"), "--detector must be flat or curved"),
    (dict(geometry="fan", scan="half"), "--scan must be full or short"),
    (dict(geometry="fan", sid_mm=500.0), "missing --sdd, --detector-pitch, --detectors"),
    (dict(geometry="fan", sid_mm=-5.0, sdd_mm=900.0, detector_pitch_mm=1.0, detectors=700), "--sid must be a positive number of mm"),
    (dict(geometry="fan", sid_mm=float("inf")), "--sid must be a positive number of mm"),
    (dict(geometry="fan", scanner="ge-lightspeed", detector_pitch_mm=0.0), "--detector-pitch must be a positive"),
    (dict(geometry="fan", scanner="ge-lightspeed", detectors=0), "--detectors must be a whole number"),
    (dict(geometry="fan", scanner="ge-lightspeed", detectors=2.5), "--detectors must be a whole number"),
    (dict(geometry="fan", scanner="ge-lightspeed", sdd_mm=500.0), "detector must lie beyond the isocentre"),
    (dict(geometry="fan", scanner="ge-lightspeed", detectors=4000), "narrower than 180"),
])
def test_bad_fan_settings_are_one_line_input_errors(kw, match):
    with pytest.raises(InputError, match=match) as e:
        CtScan(**kw)
    assert "\n" not in str(e.value)


def test_source_inside_the_image_is_a_one_line_input_error():
    scan = CtScan("fan", 10, pixel_mm=500 / 64, sid_mm=300, sdd_mm=600, detector_pitch_mm=1.0, detectors=900)
    with pytest.raises(InputError, match="source lies inside the field of view") as e:
        scan.operator((64, 64))  # half diagonal 354 mm > 300 mm
    assert "\n" not in str(e.value) and "500 x 500 mm" in str(e.value)


def test_fan_keys_are_the_manifest_keys_and_the_scan_fields():
    from medrecon.benchmark.manifest import _ACQ_KEYS

    assert set(FAN_KEYS) <= _ACQ_KEYS["ct"]
    assert set(FAN_KEYS) <= {f.name for f in dataclasses.fields(CtScan)}


def test_fan_suite_builds_its_cases_through_ctscan():
    """ct-fan-60's acquisition on the smoke suite's CT sample: a curved 736-channel projector and its sinogram."""
    from medrecon.benchmark import load_suite
    from medrecon.benchmark.data import data_root, load_cases, verify_dataset

    fan = load_suite("ct-fan-60").datasets[0]
    ct60 = load_suite("ct-60").datasets[0]
    assert fan.acquisition["geometry"] == "fan" and fan.acquisition["scanner"] == "siemens-definition"
    assert {k: v for k, v in fan.acquisition.items() if k not in FAN_KEYS and k != "geometry"} == \
        {k: v for k, v in ct60.acquisition.items() if k != "geometry"}
    assert (fan.methods, fan.split, fan.image_size, fan.file) == (ct60.methods, ct60.split, ct60.image_size, ct60.file)
    smoke = load_suite("smoke")
    ct = next(d for d in smoke.datasets if d.modality == "ct")
    ds = dataclasses.replace(ct, acquisition=dict(fan.acquisition), image_size=(64, 64))
    (case,) = load_cases(smoke, ds, verify_dataset(smoke, ds, data_root(smoke, None)), "test")
    assert isinstance(case.projector, FanBeamCurvedCT) and case.projector.n_detectors == 736
    assert case.sinogram.shape == (1, 60, 736) and case.info["scanner"] == "siemens-definition"
