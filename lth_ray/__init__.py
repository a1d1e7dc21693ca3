"""lth_ray: Iterative Magnitude Pruning (Frankle & Carbin 2019) as Ray Tune sweeps."""

__version__ = "0.3.0"
