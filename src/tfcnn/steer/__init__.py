"""Steering tools: what a user reaches for between runs.

- `runs` (steer/runs.py): the run directories under a folder, as rows to compare;
- `show_batch` (steer/show.py): a labelled grid of training images as the network sees
  them, after augmentation;
- `lr_find` (steer/lr_find.py, its training in lr_sweep.py): the learning-rate range test;
- `tune` (steer/tune.py): a Keras Tuner search whose trials are run directories
  (search.py: the search folder; tuner.py: the Keras Tuner subclass; space.py: what is
  searched; command.py: settings written back as a `tfcnn train` command).

Each module imports TensorFlow only where it needs it (`tfcnn runs` never does).
"""
