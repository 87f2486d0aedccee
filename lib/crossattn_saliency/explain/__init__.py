"""The explanations: every kind of map of "what the model listened to", and their engines.

* ``explanation``: the one result type (:class:`~.explanation.Explanation`, one kind's maps of
  one utterance with their provenance; :class:`~.explanation.Explained`, all kinds of one
  utterance), with ``save`` / ``load``;
* ``kinds``: the registry of explanation kinds, each a pure compute function of the model;
* ``attention`` / ``normca``: cross-attention and norm-weighted cross-attention by forced decoding;
* ``spes``: the model-agnostic SPES engine (masks, scores, accumulation, designs);
* ``spes_whisper``: SPES on Whisper (perturbations of the input and of the encoder output);
* ``spes_record``: the SPES engine's record of one run (stored by the run wing);
* ``backends``: how SM_X's encoder passes run and the check that admits a backend;
* ``gradients``: input x gradient and integrated gradients (captum).

May import ``core``, ``evaluate``, ``models``; imported by ``run``, ``present``, ``app``.
Nothing here reads or writes the result store.
"""
