"""Hyperbolic safety-aware CLIP (HySAC): Lorentz geometry, losses, models, training, index and redirection."""
