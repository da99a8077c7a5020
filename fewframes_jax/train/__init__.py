"""Training: teacher and student, every mode of the paper (teacher, student_only, parallel, serial, finetune).

  run_setup.py     the run's static set-up (`TrainSetup`: networks, optimizers, frame selection, loss
                   settings) and its initial state, placed on the mesh.
  trainer.py       the jitted train step of every trained network.
  student_loss.py  the student's forward on the frames it reads and its loss (fixed k, learned selector, any k).
  optim.py         Adam with staircase decay, L2 on the classifier, gradient clipping.
  loop.py          `train_and_evaluate(config, workdir)`: data, steps, eval, checkpoints, summaries, resume;
                   a serial run with no teacher run trains its teacher first, in `<workdir>/teacher`.
  preemption.py    stop at the next step boundary on SIGTERM, and save first.
  forward_speed.py measured videos/s of each network's eval forward, after training.
  summary.py       the end-of-training table (metrics and FLOPs per video of each network) and the line of
                   what the student keeps and saves against the teacher.

The modes, states and budgets are the run's vocabulary (`specs.py`); the loss terms are `losses.py`.
"""
