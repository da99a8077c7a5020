"""The evidence-recall diagnostic (fewframes_jax/paper/evidence_recall.py) on a tiny bundled long split: every
frame finds every label's evidence, and a uniform student's recall equals a count from the generator's plans."""
import jax
import numpy as np
import pytest

from configs import base
from fewframes_jax import run_config
from fewframes_jax import inference
from fewframes_jax.train import run_setup
from fewframes_jax.data import synthetic
from fewframes_jax.errors import UserError
from fewframes_jax.paper import evidence_recall
from fewframes_jax.sampling.rules import frame_indices_np

pytestmark = pytest.mark.usefixtures("fast_compile")


def network(tmp_path, k, sampling="uniform"):
  c = base.experiment("nextvlad", k=k, arg=f"tiny,mode=student_only,sampling={sampling}")
  c.data.bundled.update(cache_dir=str(tmp_path), num_train=4, num_eval=6, spec="long")
  c.data.eval_batch_size = 4
  c = run_config.resolve(c)
  forward = inference.student_forward(c, run_setup.make_setup(c).student_model)
  variables = run_setup.init_variables(forward.model, jax.random.PRNGKey(0), frames=k, feature_dim=1152)
  return inference.Network("student", forward, variables, c), c


def test_recall_of_all_frames_is_one_and_uniform_matches_the_plans(tmp_path):
  net, config = network(tmp_path, 300)
  full = evidence_recall.evidence_recall(net, config)
  assert full["videos"] == 6 and full["burst"] == 1.0 and full["long"] == 1.0
  net, config = network(tmp_path, 6)
  got = evidence_recall.evidence_recall(net, config)
  spec = synthetic.named_spec("long", config.data.bundled.num_classes)
  burst = synthetic.is_burst_class(spec)
  hits = {True: [0, 0], False: [0, 0]}
  for i in range(6):
    plan = synthetic.plan_video(spec, seed=0, split="eval", index=i)
    n = min(plan.length, 300)
    idx, nk = frame_indices_np(np.array([n], np.int32), 6, "uniform")
    chosen = idx[0, :nk[0]]
    for label, evidence in zip(plan.labels, plan.evidence):
      hits[bool(burst[label])][0] += int(evidence[chosen].any())
      hits[bool(burst[label])][1] += 1
  assert got["burst_labels"] == hits[True][1] and got["long_labels"] == hits[False][1]
  assert got["burst"] == pytest.approx(hits[True][0] / max(hits[True][1], 1))
  assert got["long"] == pytest.approx(hits[False][0] / max(hits[False][1], 1))
  assert got["burst"] < 1.0 or hits[True][1] == 0  # 6 uniform frames of ~200 miss some 2-6 frame bursts


def test_other_data_is_refused(tmp_path):
  net, config = network(tmp_path, 6)
  config.data.eval_pattern = "/data/yt8m/validate*.tfrecord"
  with pytest.raises(UserError, match="bundled synthetic"):
    evidence_recall.evidence_recall(net, config)


def test_auc_counts_pairs_and_ties():
  pos, neg = np.array([3.0, 1.0, 2.0]), np.array([1.0, 0.0])
  naive = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
  assert evidence_recall._auc(pos, neg) == pytest.approx(naive)  # pylint: disable=protected-access
  assert np.isnan(evidence_recall._auc(pos, np.array([])))  # pylint: disable=protected-access


def test_judgement_auc_of_a_teacher_on_the_long_split(tmp_path):
  c = base.experiment("hrnn", k=6, arg="tiny,mode=teacher")
  c.data.bundled.update(cache_dir=str(tmp_path), num_train=4, num_eval=6, spec="long")
  c = run_config.resolve(c)
  model = run_setup.make_setup(c).teacher_model
  variables = run_setup.init_variables(model, jax.random.PRNGKey(0), frames=c.data.max_frames, feature_dim=1152)
  teacher = inference.Network("teacher", inference.Forward(model), variables, c)
  got = evidence_recall.judgement_auc(teacher, c, max_videos=3)
  assert 1 <= got["videos"] <= 3
  assert 0.0 <= got["teacher"] <= 1.0 and got["far_from_mean"] > 0.9  # bursts are far from the mean here
