"""Models: the layer notation ("32C3-P2-...") and the Keras model built from it."""
