"""Features a model derives inside its own pipeline, so serving takes the raw columns."""
