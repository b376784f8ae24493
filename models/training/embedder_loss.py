"""The training objective the students and the eye teacher share, and their learning-rate schedule.

Distillation toward dlib's full-face descriptor of the unmasked photo (cosine, only where the photo
has one) plus a CosFace margin over the training people: one definition, so the teacher's "loss as
the students'" stays true.
"""

from __future__ import annotations

import numpy as np

COSFACE_SCALE, COSFACE_MARGIN = 30.0, 0.25


def distill_cosface(tf, e, t, tw, lab, head, n_classes: int):  # noqa: ANN001, ANN201
    """(CosFace loss, distillation loss) of unit embeddings ``e`` against unit targets ``t`` (weights
    ``tw``: 1 where a photo has a teacher descriptor) and class centres ``head`` (dim x classes)."""
    ld = tf.reduce_sum(tw * (1.0 - tf.reduce_sum(e * t, axis=1))) / (tf.reduce_sum(tw) + 1e-6)
    cos = tf.matmul(e, tf.math.l2_normalize(head, axis=0))
    logits = COSFACE_SCALE * (cos - COSFACE_MARGIN * tf.one_hot(lab, n_classes))
    lc = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(lab, logits))
    return lc, ld


def learning_rate(peak: float, step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``floor`` of the peak."""
    warm = min(1.0, (step + 1) / warmup)
    return peak * warm * (floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * step / total)))
