"""One reconstruction of arrays: settings (config), problem set-up (problems), per-modality dispatch (mri, ct)."""
