"""Fan-beam scanner presets: published or typical clinical geometries, as data (docs/ct_geometry.md).

Each preset gives the in-plane geometry of one detector row: source-to-isocentre distance (SID), source-to-detector
distance (SDD), detector pitch measured at the detector, channel count and detector shape. Flying focal spots,
quarter-detector offsets and the z direction are not modelled. A value the sources below do not pin down exactly is
called typical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SCANNERS", "ScannerPreset"]


@dataclass(frozen=True)
class ScannerPreset:
    """One scanner geometry (lengths in mm).

    Attributes:
        name: the preset's name (``--scanner``).
        sid_mm: source to isocentre.
        sdd_mm: source to detector.
        detector_pitch_mm: channel pitch at the detector (arc length on a curved detector, whose angular pitch is
            ``detector_pitch_mm / sdd_mm``).
        detectors: channels in a row.
        detector: ``"curved"`` (equiangular arc about the source) or ``"flat"``.
        summary: one line for help texts.
        source: where the numbers come from.
    """

    name: str
    sid_mm: float
    sdd_mm: float
    detector_pitch_mm: float
    detectors: int
    detector: str
    summary: str
    source: str

    @property
    def fan_angle_deg(self) -> float:
        """Full fan angle (degrees) to the outer edges of the outermost channels."""
        half = 0.5 * self.detectors * self.detector_pitch_mm
        return math.degrees(2 * (half / self.sdd_mm if self.detector == "curved" else math.atan(half / self.sdd_mm)))

    @property
    def fov_mm(self) -> float:
        """Diameter (mm) of the scan field of view: the circle every view sees whole."""
        return 2 * self.sid_mm * math.sin(math.radians(self.fan_angle_deg / 2))


SCANNERS: dict[str, ScannerPreset] = {p.name: p for p in (
    # Siemens SOMATOM Definition AS+/Flash: the DICOM-CT-PD headers of the AAPM/Mayo Clinic Low Dose CT Grand
    # Challenge data and of TCIA's LDCT-and-Projection-data (Moen et al., Med. Phys. 48(2):902-911, 2021):
    # DetectorFocalCenterRadialDistance 595 mm, ConstantRadialDistance 1085.6 mm, 736 columns,
    # DetectorElementTransverseSpacing 1.2858 mm, DetectorShape CYLINDRICAL. Fan 49.9 degrees, 50 cm field of view.
    # (The scanner's in-plane flying focal spot, which doubles the sampling, is not modelled.)
    ScannerPreset("siemens-definition", 595.0, 1085.6, 1.2858, 736, "curved",
                  "Siemens SOMATOM Definition-class third-generation scanner (curved, 736 channels)",
                  "AAPM/Mayo Low Dose CT Grand Challenge / TCIA LDCT-and-Projection-data DICOM-CT-PD headers"),
    # GE LightSpeed-class third-generation scanner: SID 541 mm, SDD 949 mm and 888 channels as widely quoted for the
    # LightSpeed family; the pitch (1.0239 mm at the detector, ~55 degrees of fan, 50 cm field of view) is typical
    # rather than taken from a manufacturer's document.
    ScannerPreset("ge-lightspeed", 541.0, 949.0, 1.0239, 888, "curved",
                  "GE LightSpeed-class third-generation scanner (curved, 888 channels; typical values)",
                  "typical published LightSpeed-class geometry (SID 541, SDD 949, 888 channels); pitch typical"),
    # Flat-panel cone-beam CT, central row, of the linac-mounted kV imager class (Varian On-Board Imager): 1000 mm
    # source to isocentre, 1500 mm source to panel, a 40 x 30 cm amorphous-silicon panel (PaxScan 4030CB class) read
    # as 1024 columns of 0.388 mm (2x2 binned), centred (full fan). Typical values: 15 degrees of fan, a field of
    # view of about 26 cm (a head, not a body: larger objects give truncated projections). C-arm CBCT systems are
    # similar (SID ~750-800 mm, SDD ~1200 mm, 30-40 cm panels).
    ScannerPreset("cbct-flat", 1000.0, 1500.0, 0.388, 1024, "flat",
                  "flat-panel CBCT / C-arm class geometry (flat, 1024 columns, ~26 cm field of view; typical values)",
                  "typical linac kV CBCT geometry (Varian OBI class: SAD 100 cm, SDD 150 cm, 40 cm panel)"),
)}
