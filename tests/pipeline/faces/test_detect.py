"""Face detection: a face that fills the frame is found (issue 26 item 5)."""

from __future__ import annotations

import numpy as np

from pipeline.config import DetectConfig
from pipeline.faces.detect import FaceDetector
from training.measure.eval_closeups import close_up, evaluate_closeups
from training.measure.predict import read_image_rgb


def test_a_real_face_cropped_to_its_box_is_found_only_with_the_padded_retry(real_material):
    """A tight crop of a real photograph (the face box itself): the detector alone misses most;
    searched again inside a border, the face is found, and its box lies within the crop."""
    photos = sorted((real_material / "images" / "deepface").glob("img*.jpg"))[:12]
    detect = DetectConfig()
    result = evaluate_closeups(photos, detect, [1.0])["kinds"]["close-up x1"]
    assert result["images"] >= 10 and result["found_with_retry"] >= result["images"] - 1
    assert result["found_without_retry"] <= result["found_with_retry"] - 3, result
    detector = FaceDetector.from_config(detect)
    image = read_image_rgb(photos[0])
    assert image is not None
    box = detector.detect(image).box(0)
    crop = close_up(image, box, 1.0)
    assert crop is not None
    found = detector.detect(crop)
    x, y, w, h = found.box(0)
    assert x >= 0 and y >= 0 and x + w <= crop.shape[1] and y + h <= crop.shape[0] and w * h > 0.3 * crop.size / 3


def test_a_frame_without_a_face_stays_without_one():
    blank = np.full((240, 320, 3), 90, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    with FaceDetector.from_config(DetectConfig()) as detector:
        assert len(detector.detect(blank)) == 0 and len(detector.detect(noise)) == 0
