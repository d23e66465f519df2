"""The classifiers UnsafeBench benchmarks, faithful to their reference code: Q16, the multi-headed safety classifier,
Stable Diffusion's safety checker, LAION's CLIP-based NSFW detector, and any Hugging Face image classifier."""
