"""The models: reading and converting real Whisper checkpoints, decoding with them.

* ``ct2``: the reader of CTranslate2 Whisper files (the embedded models);
* ``loading``: loading a model by embedded name, local folder or hub id (converted once);
* ``decoding``: features, decoding, the model's hypothesis and the teacher-forcing convention.

May import ``core``; imported by ``explain``, ``run``, ``app``. The only wing that touches
``transformers`` internals, with ``explain``'s engines.
"""
