"""The real material's labels and splits: clips of live people go by who filmed them."""

from __future__ import annotations

from pathlib import Path

from training.data.real_data import clip_sources, clip_split, link_clips


def test_the_clips_of_a_split_are_linked_under_their_filming_owner(real_material: Path, tmp_path: Path):
    videos = real_material / "videos"
    rows = clip_sources(videos)
    linked = {split: link_clips(videos, tmp_path / split, split) for split in ("tune", "test")}
    assert len(linked["tune"]) + len(linked["test"]) == len(rows) and linked["tune"] and linked["test"]
    owners = {split: {p.name.split("_")[0] for p in paths} for split, paths in linked.items()}
    assert not owners["tune"] & owners["test"]  # nobody filmed on both sides
    for split, paths in linked.items():
        for path in paths:
            (row,) = [r for r in rows.values() if path.name.endswith("_" + r["file"])]
            assert clip_split(row) == split and path.resolve() == (videos / "live" / row["file"]).resolve()
    assert link_clips(videos, tmp_path / "tune", "tune") == linked["tune"]  # again: the links are kept
