"""Text before it reaches a model: normalisation and alternate readings (decoded, de-leeted)."""
