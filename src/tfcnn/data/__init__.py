"""Datasets: IDX files, the known-dataset registry, where data is found, tf.data pipelines."""
