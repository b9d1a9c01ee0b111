"""Comparison studies: several models or settings over the same patient-level folds."""
