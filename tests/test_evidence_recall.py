"""The evidence-recall diagnostic (fewframes_jax/paper/evidence_recall.py) on a tiny bundled long split: every
frame finds every label's evidence, and a uniform student's recall equals a count from the generator's plans."""
import jax
import numpy as np
import pytest

from configs import base
from fewframes_jax import run_config
from fewframes_jax import specs
from fewframes_jax import inference
from fewframes_jax.train import run_setup
from fewframes_jax.data import synthetic
from fewframes_jax.errors import UserError
from fewframes_jax.paper import evidence_recall
from fewframes_jax.sampling.rules import frame_indices_np

pytestmark = pytest.mark.usefixtures("fast_compile")


def network(tmp_path, k, sampling="uniform", spec="long"):
  c = base.experiment("nextvlad", k=k, arg=f"tiny,mode=student_only,sampling={sampling}")
  c.data.bundled.update(cache_dir=str(tmp_path), num_train=4, num_eval=6, spec=spec)
  c.data.eval_batch_size = 4
  c = run_config.resolve(c)
  spec = specs.RunSpec.from_config(c)
  forward = inference.student_forward(spec, run_setup.make_setup(spec).student_model)
  variables = run_setup.init_variables(forward.model, jax.random.PRNGKey(0), frames=k, feature_dim=1152)
  return inference.Network("student", forward, variables, spec), c


def test_recall_of_all_frames_is_one_and_uniform_matches_the_plans(tmp_path):
  net, config = network(tmp_path, 300)
  full = evidence_recall.evidence_recall(net, config)
  assert full["videos"] == 6 and full["burst"] == 1.0 and full["long"] == 1.0
  assert full["label_free_chosen"] == full["label_free_all"] == 0.0  # the long split has none
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
  spec = specs.RunSpec.from_config(c)
  model = run_setup.make_setup(spec).teacher_model
  variables = run_setup.init_variables(model, jax.random.PRNGKey(0), frames=c.data.max_frames, feature_dim=1152)
  teacher = inference.Network("teacher", inference.Forward(model), variables, spec)
  got = evidence_recall.judgement_auc(teacher, c, max_videos=3)
  assert 1 <= got["videos"] <= 3
  assert 0.0 <= got["teacher"] <= 1.0 and got["far_from_mean"] > 0.9  # bursts are far from the mean here


def test_label_free_counts_of_a_hand_made_video():
  # 10 real frames (2 more past max_frames): a 2-frame intro, content, a black frame at 6, a title card at 9.
  kinds = np.array([1, 1, 0, 0, 0, 0, 3, 0, 0, 4, 2, 2], np.int8)
  counts = evidence_recall.label_free_counts(kinds, np.array([0, 1, 5, 6]), num_frames=10)
  np.testing.assert_array_equal(counts, [[1, 2, 0, 1, 0, 0], [6, 2, 0, 1, 1, 0]])
  shares = evidence_recall._label_free_shares(counts + evidence_recall.label_free_counts(  # pylint: disable=protected-access
      kinds, np.array([2, 3]), num_frames=10))
  assert shares["label_free_chosen"] == pytest.approx(3 / 6) and shares["label_free_all"] == pytest.approx(8 / 20)
  assert shares["label_free_chosen_by_kind"]["intro"] == pytest.approx(2 / 6)
  assert shares["label_free_all_by_kind"]["title"] == pytest.approx(2 / 20)


def test_far_from_mean_chooses_label_free_frames_on_the_realistic_split(tmp_path):
  net, config = network(tmp_path, 6, sampling="far_from_mean", spec="realistic")
  got = evidence_recall.evidence_recall(net, config)
  assert got["videos"] == 6 and 0.03 < got["label_free_all"] < 0.2
  # The trap: intros, outros, fades and title cards are the farthest frames.
  assert got["label_free_chosen"] > max(0.6, 4 * got["label_free_all"])
  net, config = network(tmp_path, 300, spec="realistic")
  every = evidence_recall.evidence_recall(net, config)
  assert every["label_free_chosen"] == pytest.approx(every["label_free_all"]) == pytest.approx(got["label_free_all"])
  assert every["burst"] == every["long"] == 1.0
