"""Prediction: files, folders, globs and in-memory images → class predictions.

`inputs` finds the files and prepares any input through the one image decoder; `run`
turns the model's probabilities (`TrainedModel.predict_proba`) into predictions;
`output` renders `tfcnn predict`'s table and CSV.
"""

from tfcnn.predict.answers import predict_files, predict_inputs, prediction
from tfcnn.predict.inputs import expand_inputs, expected_labels, model_inputs
from tfcnn.predict.output import accuracy_line, format_csv, format_table

__all__ = ["accuracy_line", "expand_inputs", "expected_labels", "format_csv", "format_table",
           "model_inputs", "predict_files", "predict_inputs", "prediction"]
