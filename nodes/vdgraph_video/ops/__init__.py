"""Pure tensor functions behind the video pack's nodes: no engine imports, testable on tiny CPU tensors.

Layouts: latents (B, C, F, H, W); frames (F, H, W, 3) float in [0, 1]. A "folded" tensor has the frames in the
batch axis, (B*F, C, H, W), frame-major inside each batch item: the layout image models and the reference
pipelines' random draws use.
"""
