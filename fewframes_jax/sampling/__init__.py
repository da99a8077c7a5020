"""Which k frames a student sees (`config.student.sampling`): every frame-selection rule.

  fixed rules       `rules.py`: uniform, random, first, middle, last, first_middle_last, stride_padded;
                    they depend on a video's length only, so the host can decode just the chosen frames.
  content-aware     `content.py`: feature_change (MGSampler's idea), far_from_mean; training-free, they
                    look at every real frame, so every frame is decoded.
  learned           `learned.py`: a small per-frame network scores every real frame, the top k go to the
                    student ('learned'; trained as `scorer_training.py` says); it needs the scorer's
                    parameters, so `inference.Selection` applies it, not `select_frames`.
  nested orders     `nested.py`: coarse_to_fine, far_from_mean and the learned scorer's ranking, whose first
                    k frames are the selection at every budget k (the any-k student, early exit).
  ranking targets   `scorer_training.py`: the frames a rank-trained scorer learns from (the teacher's judgements).

`methods.select_frames(frames, num_frames, k, method, rng)` applies any of them by name on the device
(the trainer and `inference.Selection` call it); the methods share `rules.py`'s conventions (k indices
in temporal order, never a padding frame, all frames of a video shorter than k). The host side of a
one-stream learned scorer (decode its stream, score, decode the k chosen frames) is `data/host_scorer.py`.
"""
