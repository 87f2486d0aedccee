"""The study's steps, per condition, through one result store (notebooks 02-10).

Each step computes what is missing, reuses what an earlier run (or an earlier notebook) stored,
and returns typed results that the notebooks show. Modules, in the order of the study:

* ``context``: the profile's data, models and store for one condition (:class:`~.context.Context`);
* ``keys``: where every record lives (:data:`~.keys.SECTIONS`, one function per key);
* ``store``: the result store itself (parameter-keyed, atomic, resumable);
* ``transcribing``: the models' own hypotheses and their quality (02);
* ``explaining``: every explanation kind through the store (03, 04), convergence runs (05);
* ``noise``: the reliability and null of each reference map (05-10);
* ``validating``: checks of the disattenuation and of the budgets (05);
* ``correlating``: correlations with the references, context mixing, reducers (06);
* ``deleting``: deletion curves against same-shape random floors (07);
* ``costing``: what each explanation cost (04);
* ``timing``: word timestamps from every explanation (09);
* ``sensitivity``: the references under SPES's other settings (10);
* ``executor``: where explanation jobs run (this process or Ray).

The step functions are re-exported here, so a notebook reads ``run.explain(cfg, cond)``.
May import: ``core``, ``evaluate``, ``data``, ``models``, ``explain``; imported by ``present``
(nothing of it, in fact) and ``app``.
"""
from .context import condition, dataset, model_for
from .utterances import context_for, utterances
from .correlating import alignment_head_ranks, context_mixing, correlation, reducer_comparison
from .costing import explanation_costs, recorded_seconds
from .deleting import deletion
from .explaining import convergence_runs, cross_attention, explain
from .noise import reference_noise
from .transcribing import hypotheses, quality_table
from .validating import budget_rule_table, disattenuation_checks, disattenuation_holds, disattenuation_validation

__all__ = ["condition", "context_for", "dataset", "model_for", "utterances", "hypotheses", "quality_table",
           "explain", "cross_attention", "convergence_runs", "reference_noise", "correlation", "context_mixing",
           "reducer_comparison", "alignment_head_ranks", "deletion", "explanation_costs", "recorded_seconds",
           "disattenuation_validation", "disattenuation_checks", "disattenuation_holds", "budget_rule_table"]
