"""Images from files, bytes or arrays to model inputs: the one decoder that training,
prediction, serving and explanation share."""
