"""Dataset records, ingest, cleaning, splits, de-identification, phantoms."""
