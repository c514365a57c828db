"""Models: the Keras networks built from a specification (`tfcnn.spec`), their layers, and
the one loader.

Importing this package registers tfcnn's model and layer classes with Keras, so
`keras.saving.load_model` reads a tfcnn `model.keras` after `import tfcnn.models`. It
imports TensorFlow (quietly: `tfcnn.core.tfenv`); code that must stay light imports
`tfcnn.spec` instead.
"""

from tfcnn.core.tfenv import import_tensorflow

import_tensorflow()  # before Keras: TensorFlow's start-up lines stay off the terminal

from tfcnn.models import backbones, network  # noqa: E402, F401  (registration with Keras)
