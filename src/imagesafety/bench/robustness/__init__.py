"""Robustness benchmark: natural corruptions and adversarial attacks (white-box and black-box)."""
