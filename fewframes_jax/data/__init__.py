"""YouTube-8M input: the tf.data pipeline (`yt8m`), the record reader it runs (`reader`), the record bytes
(`records`), the synthetic writer (`synthetic`), the bundled dataset (`bundled`), the feature
quantization (`quantization`), and the TensorFlow Datasets builder of the same data (`tfds_yt8m`,
prepared by `tfds_prepare`).

Importing this package does not import TensorFlow; `quantization` needs only numpy (and JAX to dequantize).
"""
