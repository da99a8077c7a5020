"""YouTube-8M input: the tf.data pipeline (`yt8m`), the record reader it runs (`reader`) and what it rejects
(`bad_records`), the record bytes (`records`), the seekable training stream (`stream`), eval batches
(`eval_batches`), a learned frame scorer applied on the host (`host_scorer`), the synthetic writer
(`synthetic`), the bundled dataset (`bundled`), the feature quantization (`quantization`), and the
TensorFlow Datasets builder of the same data (`tfds_yt8m`, prepared by `tfds_prepare`).

Importing this package does not import TensorFlow; `quantization` needs only numpy (and JAX to dequantize).
"""
