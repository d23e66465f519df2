"""PerspectiveVision-style training data for fine-tuning a VLM into a category-aware safety classifier."""
