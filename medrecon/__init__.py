"""medrecon: MRI and CT reconstruction with diffusion posterior sampling over MONAI priors."""

__version__ = "0.1.0"
