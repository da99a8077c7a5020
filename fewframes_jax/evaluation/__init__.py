"""Evaluation with the exact YouTube-8M metrics: of live train states and of saved runs.

  evaluate.py  every network of a run scored over one pass of the eval data, the last batch padded (the
               trainer's evaluation and a saved run's share this computation).
  predict.py   a saved run's metrics (`main --mode=eval`), its predictions and the Kaggle CSV
               (`--mode=predict`), an any-k student at a budget or with early exit.
"""
