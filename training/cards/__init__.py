"""What a shipped model is and how it was measured on real data: the reference scorer's
photo threshold (:mod:`.reference_card`) and session operating point
(:mod:`.session_points`), the identity card (:mod:`.identity_card`) and the dlib network's
conversion to ONNX (:mod:`.identity_export`), the signal card (:mod:`.signal_cards`), a
B2 measured on real faces held out from its training (:mod:`.eval_real_b2`), and a newly
trained B2 promoted to decide, or not, on an archive's held-out verdicts, with the fusion's
card (:mod:`.promote`).
"""
