"""Hyperbolic safety-aware CLIP (HySAC), the model half: Lorentz geometry, losses, the model, checkpoints, the
embedder, the Lorentz index and redirection. Training, data, retrieval and evaluation live in `imagesafety.hysac`."""
