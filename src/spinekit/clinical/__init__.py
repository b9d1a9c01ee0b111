"""Clinical measurements computed from spine landmarks (Cobb angles)."""
