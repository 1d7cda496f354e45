"""Stage 3, the session signals a single frame cannot show: blinks (eye aspect ratio), an
identity swap, a frozen stream, and which face region is blocked (the occlusion model);
:class:`~pipeline.signals.collector.SessionSignals` gathers them frame by frame."""
