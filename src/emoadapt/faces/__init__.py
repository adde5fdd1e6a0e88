"""Every face in a picture: located (:mod:`.detect`, OpenCV's bundled Haar cascade) and read
(:mod:`.read`, the default model's face branch on each face crop), beside the whole image's
emotion. No identity of any kind: no recognition, no embeddings kept — a face is a box, a
detection score and expression probabilities.

Import :mod:`emoadapt.faces.detect` and :mod:`emoadapt.faces.read` for the work; this package's
``__init__`` stays light (the CLI reads :mod:`.options` for its help texts)."""
