"""Datasets: IDX files, the registry of known datasets, where they are found, and tf.data pipelines."""
