"""The ``liveness`` command line, and the jobs that join the scanner to the training side
(``demo``, ``bench``): the only package of ``pipeline`` that imports ``training``."""
