"""tfcnn: convolutional image classifiers with TensorFlow 2 / Keras 3.

This module holds the version only; it must stay free of heavy imports so that
`import tfcnn` and `tfcnn --help` never load TensorFlow.
"""

__version__ = "0.1.0"
