"""Stage 4, spoof scores: the classifier's card, network and preprocessing
(:mod:`~pipeline.scoring.model`), and the backends and Ray actor that score batches of crops
(:mod:`~pipeline.scoring.scorers`)."""
