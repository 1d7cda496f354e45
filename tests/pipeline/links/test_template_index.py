import numpy as np

from pipeline.links.faces import TemplateIndex


def test_search_finds_exactly_the_pairs_within_the_radius():
    rng = np.random.default_rng(0)
    stored = rng.normal(0, 0.1, (333, 128)).astype(np.float32)
    queries = np.concatenate([stored[[5, 120, 301]] + 0.001, rng.normal(0, 0.1, (20, 128))]).astype(np.float32)
    index = TemplateIndex(stored[:200])
    index.add(stored[200:])
    radius = 1.2
    found = index.within(queries, radius)
    d = np.linalg.norm(queries[:, None, :] - stored[None, :, :], axis=2)
    expected = set(zip(*np.nonzero(d < radius), strict=True))
    assert set(zip(found.query.tolist(), found.stored.tolist(), strict=True)) == {(int(a), int(b)) for a, b in expected}
    assert np.allclose(found.distance, d[found.query, found.stored], atol=1e-4)
    assert len(index) == 333 and len(TemplateIndex().within(queries, radius)) == 0
