"""Training: the custom tf.GradientTape loop, checkpoints and the run directory."""
