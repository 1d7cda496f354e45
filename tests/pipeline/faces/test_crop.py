import numpy as np
import pytest

from pipeline.faces.crop import CropBox, crop_face, extract_square, square_crop_box


def test_square_box_is_centred_and_scaled_from_the_longer_side():
    box = square_crop_box((100, 100, 50, 40), 1.6)
    assert box == CropBox(x0=85, y0=80, side=80)
    assert (box.x0 + box.x1) / 2 == 125 and (box.y0 + box.y1) / 2 == 120


@pytest.mark.parametrize("scale", [1.0, 1.3, 1.6, 2.0])
def test_side_follows_scale(scale):
    assert square_crop_box((0, 0, 100, 60), scale).side == round(100 * scale)


def test_bad_box_and_scale_are_rejected():
    with pytest.raises(ValueError, match="positive width"):
        square_crop_box((0, 0, 0, 10))
    with pytest.raises(ValueError, match="crop scale"):
        square_crop_box((0, 0, 10, 10), 0)


def test_inside_the_image_the_crop_is_the_pixels():
    image = np.arange(100 * 100 * 3, dtype=np.uint32).reshape(100, 100, 3).astype(np.uint8)
    out = extract_square(image, CropBox(10, 20, 30))
    assert np.array_equal(out, image[20:50, 10:40])


def test_at_the_border_missing_pixels_are_black_and_the_face_keeps_its_place():
    image = np.full((100, 100, 3), 200, np.uint8)
    box = square_crop_box((0, 0, 40, 40), 1.6)  # reaches 12 px past the top-left corner
    assert box.x0 < 0 and box.y0 < 0
    out = extract_square(image, box)
    assert out.shape == (64, 64, 3)
    pad = -box.x0
    assert (out[:pad, :] == 0).all() and (out[:, :pad] == 0).all()
    assert (out[pad:, pad:] == 200).all()


def test_a_box_entirely_outside_gives_black():
    out = extract_square(np.full((10, 10, 3), 255, np.uint8), CropBox(50, 50, 8))
    assert out.shape == (8, 8, 3) and not out.any()


def test_crop_face_resizes_to_the_model_input():
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    for size in (64, 128, 260):
        out = crop_face(image, (300, 200, 80, 100), scale=1.6, size=size)
        assert out.shape == (size, size, 3) and out.dtype == np.uint8


def test_the_main_face_follows_the_previous_box_among_faces_of_one_size():
    from pipeline.faces.detect import Detections

    dets = Detections(
        boxes=np.array([[0, 0, 100, 100], [300, 0, 102, 102]], np.float32), scores=np.array([0.9, 0.8], np.float32)
    )
    assert dets.main_face("largest") == 1
    assert dets.main_face("largest", follow=(5, 2, 100, 100)) == 0
    assert dets.main_face("largest", follow=(600, 600, 50, 50)) == 1  # overlaps none: the rule decides
    single = Detections(boxes=np.array([[300, 0, 102, 102]], np.float32), scores=np.array([0.8], np.float32))
    assert single.main_face("largest", follow=(0, 0, 100, 100)) == 0
