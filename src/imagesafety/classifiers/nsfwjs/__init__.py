"""NSFWJS (MIT, Infinite Red): its three trained models, read from its npm package and run in torch.

`package.py` finds the package (a given folder or .tgz, the cache, or `npm pack`), checking each model file against
the digests of the pinned release; `convert.py` reads a model with `imagesafety.tfjs` and caches the converted weights
as safetensors; `classifier.py` is the classifier (five classes -> an unsafe score) and the encoder (penultimate
features)."""
