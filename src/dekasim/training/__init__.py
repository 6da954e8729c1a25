"""Every trainer of the project: the JSCC family (:mod:`dekasim.training.jscc`) and its training data
(:mod:`dekasim.training.data`). Library code never imports this package."""
