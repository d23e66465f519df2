"""Guard models: small heads trained on embeddings, pair augmentation, and the sample-efficiency study."""

__all__ = ["GuardConfig", "GuardResult", "train_guard"]


def __getattr__(name: str):
    """Imported on first use, so `imagesafety --help` does not load scikit-learn (PEP 562)."""
    if name in __all__:
        from imagesafety.guard import train

        return getattr(train, name)
    raise AttributeError(f"module 'imagesafety.guard' has no attribute {name!r}")
