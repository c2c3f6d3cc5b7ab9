"""What a run leaves in its ``--out`` folder: results and guard files, provenance, submission maps."""
