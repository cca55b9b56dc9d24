"""Test support that ships with the package: tiny sample files of every format (fuzzing seeds, planted
identifiers) and the reader fuzzing harness. Not I/O itself: it drives the readers and the pipeline from
outside (docs/design.md, section 1)."""
