"""The application layer: what a command does, built from the library below it (docs/design.md, section 1).

- :mod:`.pipeline`: read an input file, reconstruct it, write the outputs and the run record.
- :mod:`.batch`: a folder or glob of studies through :mod:`medrecon.scale`.
- :mod:`.simulate`: ``medrecon simulate``: measurement files from real images (the physics is in
  :mod:`medrecon.acquisition`).
- :mod:`.demo`: ``medrecon demo``.

Nothing below this package (``io``, ``recon``, ``sampling``, ``priors``, ``acquisition``) imports it.
"""
