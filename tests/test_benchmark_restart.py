"""The restart benchmark: seeking the saved stream position reaches the very batch that replaying the
epoch reaches (its timing is for BENCHMARKS.md, not asserted here)."""
import runs_testlib as lib
from fewframes_jax.benchmark import restart


def test_seek_and_replay_reach_the_same_batch(tmp_path):
  data = lib.write_dataset(str(tmp_path), num_train=48, train_shards=4)
  result = restart.benchmark_restart(data["train"], num_classes=lib.NUM_CLASSES, batch_size=4, fraction=0.8,
                                     max_frames=lib.MAX_FRAMES, feature_sizes=lib.FEATURE_SIZES,
                                     shuffle_buffer=8, cycle_length=2, repeats=1)
  assert result["records"] == 48 and result["files"] == 4 and result["skipped_batches"] == 9
  epoch, round_, index = result["position"]
  assert (epoch, round_) == (0, 1) and 0 <= index < 24  # 2 rounds of 2 files (24 records) per epoch
  assert result["same_batch"]
  assert "| 48 (4) | 4 | 9 batches |" in restart.format_restart(result)
