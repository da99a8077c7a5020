"""Prepares one config of the TFDS builder `yt8m_frame_level` (`tfds_yt8m.py`): reads a release's files
from the manual dir, or generates a bundled spec, and writes the TFDS dataset once.

  python -m fewframes_jax.data.tfds_prepare --tfds_config=2018 --manual_dir=/data/yt8m_manual [--data_dir=...]
  python -m fewframes_jax.data.tfds_prepare --tfds_config=bundled_short [--data_dir=...]

(TFDS's own `tfds build` needs Apache Beam.) Then `tfds.load("yt8m_frame_level/<config>", ...)` after
importing `fewframes_jax.data.tfds_yt8m`, or `--config.data.tfds_name=yt8m_frame_level/<config>` for
this project's runs.
"""
from typing import Sequence


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import tfds_yt8m  # pylint: disable=g-import-not-at-top  (TensorFlow Datasets)
  flags.DEFINE_enum("tfds_config", "bundled_short", [c.name for c in tfds_yt8m.Yt8mFrameLevel.BUILDER_CONFIGS],
                    "Which config to prepare.")
  flags.DEFINE_string("data_dir", "", "TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets).")
  flags.DEFINE_string("manual_dir", "", "2017/2018: the folder that holds <config>/ with the official files "
                      "(default: <data_dir>/downloads/manual).")


def main(argv: Sequence[str]) -> None:
  from absl import app, flags  # pylint: disable=g-import-not-at-top
  from fewframes_jax.data import tfds_yt8m  # pylint: disable=g-import-not-at-top
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  tfds = tfds_yt8m.tfds
  builder = tfds.builder(f"{tfds_yt8m.Yt8mFrameLevel.name}/{f.tfds_config}", data_dir=f.data_dir or None)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=f.manual_dir or None))
  splits = ", ".join(f"{split}: {info.num_examples}" for split, info in sorted(builder.info.splits.items()))
  print(f"prepared {builder.name}/{f.tfds_config} in {builder.data_dir} (videos: {splits})")


if __name__ == "__main__":
  from fewframes_jax import cli  # pylint: disable=g-import-not-at-top

  cli.quiet_start()  # before TensorFlow is imported
  _define_flags()
  cli.run(main)
