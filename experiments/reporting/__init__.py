"""What a person reads: ``report.md`` and the figures."""
