"""Stage 2, faces: where the faces are in a frame (MediaPipe detection), which one is the
session's, the square crops cut around it, and the face-mesh landmarks that follow it."""
