"""Models: the Keras networks built from a specification (`tfcnn.spec`), their layers, the
one loader, and the one inference path (`trained.TrainedModel`).

Importing this package imports no TensorFlow (`tfcnn.models.tta` and `.calibration` are
numpy and plain Python). Importing `tfcnn.models.network` (or `.backbones`) imports Keras,
quietly (`tfcnn.core.tfenv`), and registers tfcnn's model and layer classes with it, so
`keras.saving.load_model` reads a tfcnn `model.keras`; the loader does that itself.
"""
