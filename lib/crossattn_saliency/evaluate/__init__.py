"""The statistics of the study: how maps are compared and how claims are judged. Numpy only, no model.

* ``grids``: the input and encoder grids and the one way between them (the study's reducers);
* ``correlate``: normalization and correlation of maps on one grid;
* ``stats``: Fisher means, estimates with bootstrap intervals, intervals of any statistic;
* ``reliability``: split-half reliability, its permutation null, Spearman-Brown, disattenuation;
* ``token_bootstrap``: intervals from resampling the tokens of a few utterances;
* ``budget``: the rule that sizes the SPES budgets;
* ``deletion`` / ``floors``: deletion curves and AUC; random rankings of the same shape;
* ``timestamps``: Whisper's word-timestamp recipe on any map, timing errors, head ranking;
* ``metrics``: WER, BLEU, chrF;
* ``views``: which (layer, head) pairs of attention a view averages;
* ``results``: the typed result tables (correlation rows, mixing rows, deletion records);
* ``verdicts`` / ``claims``: the verdict rules and the study's claims with our estimates.

May import ``core`` only (and numpy, scipy, pandas, text metrics: never torch or a model);
imported by ``explain``, ``run``, ``present``, ``app``.
"""
