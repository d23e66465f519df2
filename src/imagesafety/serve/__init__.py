"""The moderation service: an OpenAI-compatible `/v1/moderations` and `/v1/classify` over any classifier."""

from imagesafety.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def create_app(config: ServeConfig):
    from imagesafety.serve.app import create_app as _create

    return _create(config)
