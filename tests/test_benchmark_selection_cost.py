"""What a selector costs (fewframes_jax/benchmark/selection_cost.py): frames and bytes read per rule, the scorer's
XLA FLOPs against its layer arithmetic, and the whole forward counting the scorer on every frame slot."""
import pytest

from configs import base
from fewframes_jax import run_config
from fewframes_jax.benchmark import selection_cost

pytestmark = pytest.mark.usefixtures("fast_compile")

T, SIZES = 40, (24, 8)


def config(sampling="uniform", streams="all", k=6, family="nextvlad"):
  c = base.experiment(family, k=k, arg=f"tiny,mode=parallel,sampling={sampling}")
  c.data.max_frames, c.data.feature_sizes, c.data.num_classes, c.data.eval_pattern = T, SIZES, 5, "unused"
  c.student.hrnn.num_blocks = 1
  if sampling == "learned":
    c.student.selector.streams = streams
  return c


def test_frames_and_bytes_read_by_rule():
  read = lambda c: selection_cost.frames_read(c, 6, mean_frames=30.0, mean_frames_k=5.5)
  assert read(config("uniform")) == {"frames_read": 5.5, "bytes_read": 5.5 * 32}
  assert read(config("far_from_mean")) == {"frames_read": 30.0, "bytes_read": 30.0 * 32}
  assert read(config("learned", "all")) == {"frames_read": 30.0, "bytes_read": 30.0 * 32}
  assert read(config("learned", "audio")) == {"frames_read": 30.0, "bytes_read": 30.0 * 8 + 5.5 * 24}
  assert read(config("learned", "rgb")) == {"frames_read": 30.0, "bytes_read": 30.0 * 24 + 5.5 * 8}


@pytest.mark.parametrize("streams,width", [("all", 32), ("audio", 8)])
def test_scorer_flops_follow_its_layers(streams, width):
  got = selection_cost.scorer_flops(config("learned", streams))
  h, m = 4, 16  # the default widths
  matmuls = 2 * T * (width * h + 2 * h * m + m)
  assert matmuls <= got <= 1.5 * matmuls + 20 * T * (width + m)  # plus biases, relu, the mean, masking
  assert selection_cost.scorer_flops(config("uniform")) == 0.0


def test_the_whole_forward_counts_the_scorer_on_every_slot():
  learned = selection_cost.forward_flops(config("learned", "all"), 6)
  ffm = selection_cost.forward_flops(config("far_from_mean"), 6)
  uniform = selection_cost.forward_flops(config("uniform"), 6)
  scorer = selection_cost.scorer_flops(config("learned", "all"))
  assert uniform < ffm  # the same model; far_from_mean computes a distance per frame slot
  assert learned - uniform >= 0.9 * scorer
  share = selection_cost.scorer_share(run_config.resolve(config("learned", "audio")), [6, 12])
  assert set(share) == {6, 12} and share[6]["share"] > share[12]["share"] > 0
