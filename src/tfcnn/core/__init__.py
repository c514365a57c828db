"""Shared foundations every stage may use: errors, settings, presets, the run directory,
atomic file writes and the lazy TensorFlow import. Nothing here imports another tfcnn package."""
