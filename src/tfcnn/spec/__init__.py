"""Model specifications, parsed without TensorFlow: the layer notation ("32C3-P2-...",
`notation`) and the `keras:NAME` backbone names (`backbones`). A bad `--model` fails here
in milliseconds, before any command loads TensorFlow; `tfcnn.models` builds the networks."""
