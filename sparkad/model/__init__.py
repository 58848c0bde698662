"""The trained model as scoring sees it, in numpy only (no TensorFlow): the model directory, the
pre-processing, the exported networks, the fixed-order dense kernel and the named scores."""
