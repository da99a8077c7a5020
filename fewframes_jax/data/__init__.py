"""YouTube-8M input: the tf.data reader (`yt8m`), the synthetic writer (`synthetic`), the bundled dataset.

Importing this package does not import TensorFlow; `quantization` needs only JAX and numpy.
"""
