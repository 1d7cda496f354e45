"""Stage 1, inputs and frames: which sessions a scan covers (files, folders, globs, manifests,
local or s3://) and how sampled, upright RGB frames stream out of each video (PyAV)."""
