"""Results and their evaluation: per-class metrics, statistics, and the published references."""
