"""The product layer: scenarios, runner, CLI, artifacts (imports ad_core, never the reverse)."""
