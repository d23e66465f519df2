"""Calibrated scores and operating points: maps fitted on a named split (`fit`), from finished runs (`run`)."""

from imagesafety.calibration.fit import METHODS, Calibration, CategoryMap, load_calibration
from imagesafety.calibration.run import calibrate

__all__ = ["METHODS", "Calibration", "CategoryMap", "calibrate", "load_calibration"]
