"""Prediction: files, folders, globs and in-memory images → class predictions.

`inputs` finds the files and prepares any input through the one image decoder; `run`
runs the model (with optional TTA); `output` renders `tfcnn predict`'s table and CSV.
"""

from tfcnn.predict.inputs import expand_inputs, expected_labels, model_inputs
from tfcnn.predict.output import accuracy_line, format_csv, format_table
from tfcnn.predict.run import batch_probabilities, predict_files, predict_inputs, prediction

__all__ = ["accuracy_line", "batch_probabilities", "expand_inputs", "expected_labels",
           "format_csv", "format_table", "model_inputs", "predict_files", "predict_inputs",
           "prediction"]
