"""What a shipped model is and how it was measured on real data: the reference scorer's
photo threshold (:mod:`.reference_card`) and session operating point
(:mod:`.session_points`), the identity card (:mod:`.identity_card`) and the dlib network's
conversion to ONNX (:mod:`.identity_export`), and the signal card (:mod:`.signal_cards`).
"""
