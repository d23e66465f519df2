"""Guard models: small heads trained on embeddings, pair augmentation, and the sample-efficiency study."""

from imagesafety.guard.train import GuardConfig, GuardResult, train_guard

__all__ = ["GuardConfig", "GuardResult", "train_guard"]
