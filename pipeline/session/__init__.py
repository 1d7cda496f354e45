"""Stage 5, one session: the one per-frame path every frame takes (detect, follow, crop, face
mesh, signals), its typed records, and how frame results become the session's row and decision."""
