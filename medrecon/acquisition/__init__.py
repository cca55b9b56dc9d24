"""Acquisition models: how a measurement was taken, one rule each for sampling, calibration, maps, geometry, dose and noise.

- :mod:`.mri`: Cartesian sampling, ESPIRiT calibration and maps, noise estimate, simulated multi-coil k-space.
- :mod:`.ct`: :class:`~.ct.CtScan` (parallel or fan geometry, views, pixel size, dose) -> projector, simulated
  sinograms.
- :mod:`.scanners`: fan-beam scanner presets (clinical geometries in mm, with their sources).

This package imports only :mod:`operators` and :mod:`medrecon.errors` (an import-linter contract).
"""
