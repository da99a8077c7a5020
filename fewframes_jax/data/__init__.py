"""YouTube-8M input: the tf.data pipeline (`yt8m`), the record reader it runs (`reader`), the record bytes
(`records`), the synthetic writer (`synthetic`), the bundled dataset (`bundled`), and the feature
quantization (`quantization`).

Importing this package does not import TensorFlow; `quantization` needs only numpy (and JAX to dequantize).
"""
