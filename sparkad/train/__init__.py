"""Stage 3, HLF → model directory: the SM cocktail, the Keras models (AE, ALAD, VAE), their layers, the
training loop (tf.distribute) and its Spark-distributed driver. Imports TensorFlow; executors never do."""
