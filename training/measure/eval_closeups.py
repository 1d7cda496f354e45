"""Is a face that fills the frame found? Real photographs and close-ups cut from them.

Every real photograph under ``../shared/real/images`` is searched with the scan's detector;
where its face is found, close-ups are cut from it the way a selfie held close to the lens
frames a face: squares ``--scales`` times the face box (1.0: the box itself, a tight crop;
under 1: tighter than the face), centred on it. Each image and close-up is searched with the
padded retry off (``detect.pad_retry=0``, the detector as it was) and on (the config's).

    uv run python -m training.measure.eval_closeups          # about a minute on 2 cores

Prints JSON: per kind of image (photographs, each close-up scale), how many there were and
how many had a face found without and with the retry.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.config import DetectConfig, load_scan_config
from pipeline.faces.detect import Detections, FaceDetector
from training.data.preprocess import IMAGE_EXTENSIONS
from training.data.real_data import REAL
from training.measure.predict import read_image_rgb

REAL_IMAGES = REAL / "images"


def close_up(image: np.ndarray, box: tuple[float, float, float, float], scale: float) -> np.ndarray | None:
    """The square ``scale`` times the box's longer side, centred on it; None where it leaves the image."""
    x, y, w, h = box
    side = scale * max(w, h)
    x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    if x0 < 0 or y0 < 0 or x1 > image.shape[1] or y1 > image.shape[0] or side < 16:
        return None
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def evaluate_closeups(images: list[Path], detect: DetectConfig, scales: list[float]) -> dict:
    """Faces found without and with the padded retry, per kind of image (see the module)."""
    without = FaceDetector.from_config(detect.model_copy(update={"pad_retry": 0.0}))
    with_retry = FaceDetector.from_config(detect)
    kinds: dict[str, dict[str, int]] = {}

    def count(kind: str, image: np.ndarray) -> Detections:
        """Tally ``image`` under ``kind``; returns what the detector without the retry found."""
        found = without.detect(image)
        tally = kinds.setdefault(kind, {"images": 0, "found_without_retry": 0, "found_with_retry": 0})
        tally["images"] += 1
        tally["found_without_retry"] += bool(len(found))
        tally["found_with_retry"] += bool(len(with_retry.detect(image)))
        return found

    for path in images:
        image = read_image_rgb(path)
        if image is None:
            continue
        found = count("photograph", image)
        main = found.main_face("largest")
        if main is None:
            continue
        box = found.box(main)
        for scale in scales:
            crop = close_up(image, box, scale)
            if crop is not None:
                count(f"close-up x{scale:g}", crop)
    return {"pad_retry": detect.pad_retry, "kinds": kinds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=REAL_IMAGES, help="folder of real photographs (recursive)")
    parser.add_argument("--scales", default="0.8,1.0,1.2", help="close-up sides as multiples of the face box")
    args = parser.parse_args(argv)
    images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    scales = [float(s) for s in args.scales.split(",")]
    print(json.dumps(evaluate_closeups(images, load_scan_config(None).detect, scales), indent=2))


if __name__ == "__main__":
    main()
