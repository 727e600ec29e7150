"""``multihead demo``: the product's main job, end to end, in a few CPU minutes.

1. Train a 2-layer attention-only DecoderLM on repeated random tokens
   (:data:`multihead.data.TASKS` ``"induction_random"``) and find the phase change in its loss
   curve (Olsson et al. 2022, "In-context learning and induction heads").
2. Score every head and name the previous-token head of layer 0 and the induction head of
   layer 1.
3. Rank heads by gradient importance (Michel et al. 2019), prune all but the fewest needed,
   and show that the loss on the repeated half holds.
4. Write ``runs/demo/report.html`` (the viewer, the figures, the head table) and the PNGs.

The parts: :mod:`~multihead_apps.demo.recipe` (sizes), :mod:`~multihead_apps.demo.heads`
(scores, importance, pruning), :mod:`~multihead_apps.demo.pipeline` (the steps),
:mod:`~multihead_apps.demo.report` (HTML and terminal), :mod:`~multihead_apps.demo.cli`.
"""
