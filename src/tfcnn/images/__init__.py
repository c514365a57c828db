"""Images from files, bytes or arrays to model inputs: the one decoder that training,
prediction, serving and explanation share.

`decode` opens and decodes files and bytes safely (regular files only, a memory cap per
decode); `prepare` makes the exact pixels training stores and prediction feeds
(`to_pixels`, `decode_for_model`, `model_input`, `prepare`, `image_from_array`); `digits`
makes a user's digit look like MNIST's. `preprocess` is an old name, re-exports only."""
