"""Across sessions: which sessions share a face (``same_face``) or a recording (``same_video``),
and the clusters such links make."""
