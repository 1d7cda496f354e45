"""``liveness bench``: what each stage costs per second of video on this machine, what the
whole scan costs against decoding alone, how close it gets to the bound the stages set, and
how it compares with a naive loop computing the same outputs.

On generated sessions (the scan's own sampling and schedules), in one run:

1. each stage alone: decode (PyAV: every frame decoded, the sampled ones converted to RGB:
   what the scan's sampling needs), then the scan's per-frame path over the decoded frames,
   timed per stage (detection, the face-mesh signals, the identity embedding), and the
   scorers (configured backend and batch size) on the faces the schedules pick, plus every
   face of the sessions near a threshold (``scoring.refine_band``), as the scan does. CPU
   seconds per second of video for each. One process per core measures its share of the
   sessions, all at once: a core does less work per second when every core is busy, and the
   bound assumes every core busy;
2. the bound: what the machine could do with the stages perfectly overlapped and no
   overhead: CPU cores / the stages' CPU seconds per session (with a GPU scorer: the
   smaller of its rate and the CPU stages' rate);
3. the scan end to end (``liveness scan`` in a child process: Ray, actors, batching,
   Parquet), its sessions/s from Ray being up to the last commit, the CPU of its whole
   process tree (driver, Ray's processes, workers, actors) and its peak memory (RSS summed,
   and PSS: shared pages counted once). ``cost_vs_decode`` is that CPU per second of video
   over decoding's: 1.0 is the floor of a design that must decode every frame;
4. the naive loop over some of the sessions, computing the same outputs as the scan, frame
   by frame, in one process, the way the seed's scripts work: OpenCV decodes every frame,
   and every sampled frame gets detection, the face mesh, EAR, similarity, occlusion, the
   identity embedding and every scorer, each model on one crop at a time, no Ray.

``pipeline_efficiency`` = scan sessions/s over the bound: what Ray, batching, the driver,
queues and stalls cost, start-up included; ``steady_efficiency`` is the same between the
first and the last finished session, once workers and actors are warm. ``speedup_vs_naive``
= scan sessions/s over the naive loop's.

Kept free of imports: the link search's child process imports :mod:`.links_child` through it.
"""
