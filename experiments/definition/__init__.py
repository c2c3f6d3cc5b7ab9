"""What a run is: each setting declared once (``settings``, ``config``), the methods, presets,
scenarios, built-in datasets and domains, each a registry."""
