"""Studies with exact answers: the covariance-heuristic study (paper Fig. 2)."""
