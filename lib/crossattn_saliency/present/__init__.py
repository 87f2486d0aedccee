"""How results look: tables for readers, figures, the report.

* ``tables``: every table as CSV and Markdown, atomically, with its title and note;
* ``figures``: what every figure shares (an optional axis, saving, row scaling);
* ``maps``: spectrograms and explanation maps over time, attention heads, word boundaries;
* ``charts``: correlations per layer and head, deletion curves, reliability, timings, sensitivity;
* ``report``: ``REPORT.md``, rendered from numbers computed elsewhere.

May import ``core``, ``evaluate``, ``explain``, ``run``; imported by ``app`` and the notebooks.
"""
