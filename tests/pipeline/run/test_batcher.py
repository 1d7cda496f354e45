"""Which session owns which score: the crop batcher on its own, without Ray."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.run.batcher import CropBatcher


def crops(n: int, value: int) -> dict[str, np.ndarray]:
    """``n`` faces as two kinds of crop whose pixels hold ``value`` (so a crop tells which
    session it came from); the second kind holds ``value + 100``."""
    return {"small": np.full((n, 1, 1, 3), value, np.uint8), "wide": np.full((n, 2, 2, 3), value + 100, np.uint8)}


def score_of(batch) -> dict[str, np.ndarray]:
    """Two fake scorers, each scoring its own kind of crop with its pixel value, so misrouted
    scores (or crops of two kinds out of step) are visible."""
    return {
        "a": batch.crops["small"][:, 0, 0, 0].astype(np.float32),
        "b": batch.crops["wide"][:, 1, 1, 0].astype(np.float32),
    }


def test_sessions_split_across_batches_get_their_own_scores_in_order():
    batcher = CropBatcher(batch_size=4)
    batcher.add("a", crops(3, 1))
    batcher.add("b", crops(6, 2))
    batcher.add("c", crops(1, 3))
    assert batcher.queued == 10 and batcher.pending == 3
    first, second = batcher.next_batch(), batcher.next_batch()
    assert [(s.session_id, s.start, s.stop) for s in first.segments] == [("a", 0, 3), ("b", 0, 1)]
    assert [(s.session_id, s.start, s.stop) for s in second.segments] == [("b", 1, 5)]
    assert batcher.next_batch() is None  # 2 crops left: not a full batch
    last = batcher.next_batch(force=True)
    assert [(s.session_id, s.start, s.stop) for s in last.segments] == [("b", 5, 6), ("c", 0, 1)]
    assert batcher.queued == 0
    # results come back out of order: a session completes only when all its crops are scored
    assert batcher.scored(second, score_of(second)) == []
    done = batcher.scored(last, score_of(last))
    assert (
        [sid for sid, _ in done] == ["c"] and done[0][1]["a"].tolist() == [3.0] and done[0][1]["b"].tolist() == [103.0]
    )
    done = dict(batcher.scored(first, score_of(first)))
    assert done["a"]["a"].tolist() == [1.0] * 3 and done["b"]["a"].tolist() == [2.0] * 6
    assert done["b"]["b"].tolist() == [102.0] * 6
    assert batcher.pending == 0


def test_a_session_queued_with_fewer_kinds_of_crop_is_batched_apart_and_gets_only_those_scores():
    batcher = CropBatcher(batch_size=4)
    batcher.add("a", crops(2, 1))
    batcher.add("refined", {"small": crops(3, 2)["small"]})  # a refinement round: the decider's crops only
    batcher.add("c", crops(3, 3))
    first = batcher.next_batch()  # 3 crops queued behind it, but of other kinds: the batch ends here
    assert [(s.session_id, s.start, s.stop) for s in first.segments] == [("a", 0, 2)]
    second = batcher.next_batch()
    assert [(s.session_id, s.start, s.stop) for s in second.segments] == [("refined", 0, 3)]
    assert second.crops.keys() == {"small"}
    done = dict(batcher.scored(second, {"a": second.crops["small"][:, 0, 0, 0].astype(np.float32)}))
    assert done["refined"].keys() == {"a"} and done["refined"]["a"].tolist() == [2.0] * 3
    last = batcher.next_batch(force=True)
    assert [(s.session_id, s.start, s.stop) for s in last.segments] == [("c", 0, 3)]
    assert set(dict(batcher.scored(first, score_of(first)))) == {"a"}


def test_a_failed_batch_drops_its_sessions_and_their_other_crops():
    batcher = CropBatcher(batch_size=2)
    batcher.add("a", crops(3, 1))
    batcher.add("b", crops(1, 2))
    first = batcher.next_batch()
    assert first.session_ids() == ["a"]
    batcher.drop(first.session_ids())
    assert "a" not in batcher and batcher.queued == 1
    rest = batcher.next_batch(force=True)
    assert rest.session_ids() == ["b"]
    assert [sid for sid, _ in batcher.scored(rest, score_of(rest))] == ["b"]


def test_scores_of_a_dropped_session_that_come_back_later_are_ignored():
    batcher = CropBatcher(batch_size=2)
    batcher.add("a", crops(4, 1))
    first, second = batcher.next_batch(), batcher.next_batch()
    batcher.drop(["a"])
    assert batcher.scored(second, score_of(second)) == [] and batcher.scored(first, score_of(first)) == []


def test_bad_use_is_an_error():
    batcher = CropBatcher(batch_size=2)
    with pytest.raises(ValueError, match="no crop"):
        batcher.add("a", crops(0, 1))
    batcher.add("a", crops(1, 1))
    with pytest.raises(ValueError, match="already queued"):
        batcher.add("a", crops(1, 1))
    batch = batcher.next_batch(force=True)
    with pytest.raises(ValueError, match="2 a scores for a batch of 1 crops"):
        batcher.scored(batch, {"a": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="the same faces"):
        batcher.add("b", {"small": np.zeros((1, 1, 1, 3), np.uint8), "wide": np.zeros((2, 1, 1, 3), np.uint8)})
    with pytest.raises(ValueError, match="batch_size"):
        CropBatcher(batch_size=0)
