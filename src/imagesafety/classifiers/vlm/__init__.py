"""Vision-language models as safety classifiers: prompt protocols, answer parsing, endpoint and guard adapters."""
