"""HiLight: an emphasis actor that marks the pivotal parts of a user's history for a frozen solver.

The actor (``actor``) reads a rerank example and scores the history's units (item lines, or tokens);
``spans`` turns scores into emphasis spans under a budget and renders them as
``<start_important>``/``<end_important>`` in the otherwise unaltered prompt (``gr2.rerank_format``);
a frozen solver (``solver``) answers, and ``train`` learns the actor from the solver's reward alone
(GRPO). ``methods`` holds the same-budget baselines, ``evaluate`` compares them all against no emphasis.
"""
