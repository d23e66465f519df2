"""`python -m imagesafety.cli`: the command line."""

from imagesafety.cli import app

app(prog_name="imagesafety")
