"""What users run besides the notebooks.

* ``clip``: explain one audio clip with any Whisper (Python and ``python -m crossattn_saliency explain``);
* ``bench`` / ``bench_report``: SPES throughput and precision benchmarks, and their Markdown pages;
* ``notebooks``: the papermill runner behind ``make nb`` and ``make reproduce``.

May import every other wing; imported by nothing but the package's command line.
"""
