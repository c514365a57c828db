"""Old home of the image helpers, kept for a moment as re-exports only: import from
`tfcnn.images.decode` (files and bytes), `tfcnn.images.prepare` (model inputs) and
`tfcnn.images.digits` (MNIST-style digits) instead."""

from tfcnn.images.decode import (
           FORMATS,
           FORMATS_TEXT,
           ImageError,
           ImageTooLarge,
           flatten,
           load_image,
)
from tfcnn.images.digits import MIN_CONTRAST, MNIST_BOX, MNIST_SIZE, WORK_SIDE, ink_map, mnist_style
from tfcnn.images.prepare import PREPROCESSINGS, prepare, resize_only

__all__ = ["FORMATS", "FORMATS_TEXT", "MIN_CONTRAST", "MNIST_BOX", "MNIST_SIZE", "PREPROCESSINGS",
           "WORK_SIDE", "ImageError", "ImageTooLarge", "flatten", "ink_map", "load_image",
           "mnist_style", "prepare", "resize_only"]
