"""Model builders and the explicit model table (:data:`spinekit.models.registry.MODELS`)."""
