"""Known images first: perceptual hashes (PDQ, pHash), banks of known images searched with FAISS, matching, and the
near-duplicate audit of datasets."""

from imagesafety.hashes.api import add, build, compute_hashes, match, remove
from imagesafety.hashes.audit import audit
from imagesafety.hashes.bank import BankError, HashBank, Match, load_bank

__all__ = ["audit", "BankError", "HashBank", "Match", "add", "build", "compute_hashes", "load_bank", "match", "remove"]
