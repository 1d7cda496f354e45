"""How good is a model or a rule: the ISO/IEC 30107-3 metrics and their plots
(:mod:`.metrics`, :mod:`.plots`), scoring images (:mod:`.predict`), evaluations of crops,
images, sessions and whole scans (:mod:`.evaluate`, :mod:`.evaluate_images`,
:mod:`.evaluate_sessions`, :mod:`.eval_scan`), of the signals, the links and close-ups
(:mod:`.eval_signals`, :mod:`.eval_links`, :mod:`.eval_closeups`), and operating points
chosen on an archive's verdicts (:mod:`.calibrate`).
"""
