"""HySAC applications over the model in `imagesafety.hyperbolic`: quadruple data, training, calibration, retrieval
and evaluation (`imagesafety hysac ...`)."""
