"""Evidence: where in an image a classifier's unsafe evidence is (maps and boxes), whether the map is faithful
(deletion / insertion against a random map), and the smallest region whose removal flips the verdict."""

from imagesafety.evidence.api import METHODS, Evidence, ExplainSettings, explain_image
from imagesafety.evidence.task import explain

__all__ = ["METHODS", "Evidence", "ExplainSettings", "explain", "explain_image"]
