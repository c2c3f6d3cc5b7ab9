"""Running a study: the plan worked out once, data preparation, the runner, executors and caches."""
