"""Image + target transforms: resize (stretch or keep aspect with padding), anatomy-aware flip."""
