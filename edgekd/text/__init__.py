"""Text embedding distillation: a large pretrained sentence encoder (MiniLM) into small on-device students.

* :mod:`edgekd.text.corpus`: English sentences read from Debian's ``wordnet-base`` and ``fortunes`` files, with
  WordNet's 45 lexicographer categories as labels for the downstream probe.
* :mod:`edgekd.text.tokenize`: the teacher's WordPiece vocabulary (phones, Pis) and a hashed word vocabulary
  (microcontrollers), both plain JSON/text files that ship in a bundle.
* :mod:`edgekd.text.teacher`: the MiniLM teacher (mean pooling, L2 normalised) and its on-disk embedding cache.
* :mod:`edgekd.text.metrics`: mean cosine, nearest-neighbour agreement, linear probe.
* :mod:`edgekd.text.train`: the distillation loop for embedding students; :mod:`edgekd.text.init`: their
  least-squares start; :mod:`edgekd.text.distill`: one run end to end; :mod:`edgekd.text.task`: the task.
* :mod:`edgekd.text.export`: int8 ``.tflite`` / ``.pte`` of a text student, checked on the host runtimes.
"""
