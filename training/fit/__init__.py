"""How a model is fitted: the EfficientNet-B2 recipe (:mod:`.train`) and its ONNX export
(:mod:`.export`), and the region-occlusion model (:mod:`.occlusion`).
"""
