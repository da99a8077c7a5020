"""A trained network exported for serving outside this project (`main --mode=export`).

  ranking.py      the function every export serves: the eval forward, then the top classes.
  export.py       the export: a `jax.export` artifact, the SavedModel and export_info.json.
  saved_model.py  the TensorFlow SavedModel (jax2tf), whose serving signature parses YouTube-8M records.
"""
