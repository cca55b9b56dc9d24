"""Acquisition models: how a measurement was taken, one rule each for sampling, calibration, maps and noise.

:mod:`.mri`: Cartesian sampling, ESPIRiT calibration and maps, noise estimate. CT geometry and dose still live
with the projectors (``operators.ct``) and the sinogram format (``io/formats/sinogram.py``).
"""
