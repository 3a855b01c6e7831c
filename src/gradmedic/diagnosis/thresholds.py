"""Every number a rule compares against, with what it means and where it comes from.

The rules (:mod:`gradmedic.diagnosis.rules`) judge mechanisms by what they do to learning, so
each threshold below is stated in those terms. Ratios are end-to-end backward-signal ratios
``r = ||dL/dh^first|| / ||dL/dh^last||`` (:func:`gradmedic.trace.derived.signal_ratio`) unless
said otherwise; fractions are shares of units. Changing a value here changes the findings; the
tests pin the findings, not these names.

Example::

    >>> VANISH_WARNING, VANISH_ERROR
    (0.001, 1e-06)
"""

from __future__ import annotations

from gradmedic.trace.derived import SPIKE_FACTOR

__all__ = [
    "CHAOTIC_LAYER_GAIN",
    "CHAOTIC_MIN_GROWTH",
    "CRITICAL_DEFICIT_DECADES",
    "DEAD_ERROR",
    "DEAD_REPORT",
    "DEAD_WARNING",
    "DEEP_CROSSINGS",
    "DEFAULT_LR",
    "EXPLODE_ERROR",
    "EXPLODE_WARNING",
    "FORWARD_GROWTH",
    "GATED_VANISH_WARNING",
    "LEARN_MIN_UPDATE",
    "LOSS_JUMP",
    "LOSS_JUMP_WINDOW",
    "MEMORY_FALL",
    "NEGATIVE_BIAS",
    "NORM_DRIVEN_SHARE",
    "POOR_INIT_MIN_DECADES",
    "POOR_INIT_MIN_SHARE",
    "PRACTICAL_CRITICAL_SW2",
    "RNN_AMPLIFY_SIGMA",
    "RNN_EXPLODE_ERROR",
    "RNN_EXPLODE_WARNING",
    "RNN_GAMMA",
    "RNN_VANISH_ERROR",
    "RNN_VANISH_WARNING",
    "SATURATION_ERROR",
    "SATURATION_REPORT",
    "SATURATION_WARNING",
    "SHARE_MIN_DECADES",
    "SPIKE_FACTOR",
    "VANISH_ERROR",
    "VANISH_INFO",
    "VANISH_INFO_MIN_CROSSINGS",
    "VANISH_WARNING",
]

# ------------------------------------------------------------------ depth: vanishing / exploding
#: ``r`` below this is a warning: under SGD the first weighted layer then learns a thousand
#: times slower than the last (a layer's weight gradient is its input times the backward signal
#: at its output, Glorot & Bengio 2010, Sec. 4.2.1).
VANISH_WARNING = 1e-3
#: ``r`` below this is an error: a millionfold slower first layer does not learn in any run
#: length people train for.
VANISH_ERROR = 1e-6
#: ``r`` below this over at least :data:`VANISH_INFO_MIN_CROSSINGS` weighted layers is an info
#: note: a hundredfold decay is not yet harmful but is where a deeper stack starts to be.
VANISH_INFO = 1e-2
#: Crossings needed before :data:`VANISH_INFO` applies (one layer's gain alone says little).
VANISH_INFO_MIN_CROSSINGS = 2
#: A first layer whose relative weight change per step is below this does not learn in practice:
#: it would need more than ~1e5 steps to change by 10 %; with ``r < VANISH_WARNING`` it makes the
#: vanishing an error.
LEARN_MIN_UPDATE = 1e-6
#: From this many crossings on, a vanishing signal is also prescribed normalisation and residual
#: connections (gradmedic's choice, not a published number: deep enough that the structural
#: cures, whose gradient path does not depend on the init, are worth changing the model for).
DEEP_CROSSINGS = 8
#: Learning rate assumed for the SGD step ``lr x ||dL/dW|| / ||W||`` when the trace records
#: neither an update ratio nor a learning rate (``TrainConfig``'s default, a common SGD rate).
DEFAULT_LR = 0.01
#: ``r`` above this is exploding (warning): the mirror image of :data:`VANISH_WARNING`.
EXPLODE_WARNING = 1e3
#: ``r`` above this is exploding (error): the mirror image of :data:`VANISH_ERROR`.
EXPLODE_ERROR = 1e6
#: Measured per-layer gain of a plain chain at or above which the stack is in the chaotic phase:
#: gain 1.1 is ``chi1 = 1.21`` (Schoenholz et al. 2017, Sec. 3: chi1 > 1 is chaotic).
CHAOTIC_LAYER_GAIN = 1.1
#: A chaotic or compounding path is reported only once its signal grows this much end to end
#: (one decade: less moves the first layer's step size no more than a learning-rate tweak).
CHAOTIC_MIN_GROWTH = 10.0
#: Forward growth (ratio of pre-activation mean squares ``q``, last activation / first) that makes
#: a skip-connected path's backward growth multiplicative: 100x in ``q`` = 10x in scale.
#: Normalised residual nets grow ``q`` linearly (about 10x over 24 blocks); unnormalised ones
#: geometrically (Zhang, Dauphin & Ma 2019, Fixup).
FORWARD_GROWTH = 100.0
#: Growth is "driven by normalisation" when the normalisation layers account for more than this
#: share of ``log10 r``: batch norm without skip connections explodes gradients at init (Yang et
#: al. 2019), which a different weight scale does not cure.
NORM_DRIVEN_SHARE = 0.5
#: Contributions smaller than this (in decades, ``|log10|``) are left out of the evidence's
#: ``share`` breakdown: rounding noise of modules that pass the signal unchanged.
SHARE_MIN_DECADES = 1e-3

# ------------------------------------------------------------------ poor-init
#: The weight scale must account for at least this many decades of ``r`` to be blamed.
POOR_INIT_MIN_DECADES = 1.0
#: ... and for at least this share of ``log10 r`` (otherwise something else dominates).
POOR_INIT_MIN_SHARE = 0.25
#: Theory's critical ``sigma_w^2`` is used as the yardstick only where it is practical: at most
#: this (ReLU family: 2, He et al. 2015; tanh: ~1, Glorot & Bengio 2010); sigmoid's (~16 at
#: ``sigma_b = 0``, since sigmoid' <= 1/4) is not an init anyone should use.
PRACTICAL_CRITICAL_SW2 = 10.0
#: A ReLU-family stack whose weight scale sits this many decades (of ``r``) below critical is
#: blamed on the weights rather than on the activation's derivative.
CRITICAL_DEFICIT_DECADES = 1.0

# ------------------------------------------------------------------ saturation / dead units
#: Largest saturated share (units with ``|phi'| < 1 %`` of its maximum, measured by the Monitor)
#: of a layer that is reported at all (info).
SATURATION_REPORT = 0.2
#: ... a warning: half the units pass (almost) no gradient.
SATURATION_WARNING = 0.5
#: ... an error: nine units in ten pass (almost) no gradient.
SATURATION_ERROR = 0.9
#: Share of a ReLU layer's units that output zero for every sample, reported at all (info).
#: Such units get no gradient and cannot recover (Maas et al. 2013; Lu et al. 2019).
DEAD_REPORT = 0.3
#: Mean dead share over all ReLU layers (or a layer's worst) that is a warning.
DEAD_WARNING = 0.5
#: A layer's dead share that is an error when the mean is also at :data:`DEAD_WARNING`.
DEAD_ERROR = 0.9
#: Mean bias (of the weight layers before the dead units) below which the cause names the
#: negative bias: with unit-scale pre-activations a bias of -0.5 zeroes 69 % of the entries
#: (50 % at bias 0).
NEGATIVE_BIAS = -0.5

# ------------------------------------------------------------------ recurrent networks
#: First-over-last ratio of the time profile ``||dL/dh_t||`` that is vanishing through time
#: (warning for a vanilla RNN; info for gated cells): same reasoning as :data:`VANISH_WARNING`.
RNN_VANISH_WARNING = 1e-3
#: ... an error for a vanilla RNN.
RNN_VANISH_ERROR = 1e-6
#: Gated cells (LSTM/GRU) can learn to open their gates (Hochreiter & Schmidhuber 1997); only a
#: fall below this is a warning for them.
GATED_VANISH_WARNING = 1e-8
#: Peak-over-last of the time profile that is exploding through time (warning).
RNN_EXPLODE_WARNING = 1e3
#: ... an error.
RNN_EXPLODE_ERROR = 1e6
#: The memory horizon is the number of steps back until the profile falls below this fraction
#: of its value at the last step.
MEMORY_FALL = 1e-3
#: ``gamma``, the bound on ``|phi'|`` in Pascanu, Mikolov & Bengio (2013): 1 for tanh and ReLU.
#: ``lambda1(W_hh) < 1/gamma`` is sufficient for vanishing, ``> 1/gamma`` necessary for exploding.
RNN_GAMMA = 1.0
#: Largest singular value of ``W_hh`` at or above which a run that did not explode still gets an
#: info note (twice the necessary 1/gamma: a few steps with open units can amplify).
RNN_AMPLIFY_SIGMA = 2.0

# ------------------------------------------------------------------ spikes
#: A loss that rises by this factor within :data:`LOSS_JUMP_WINDOW` steps after a gradient spike
#: marks the spike harmful (warning); a spike the loss shrugs off is an info note. The spike
#: itself is :data:`SPIKE_FACTOR` times the running baseline of the global gradient norm
#: (:func:`gradmedic.trace.derived.spike_steps`, shared with the report's figure).
LOSS_JUMP = 1.5
#: Steps after (and before, for the reference median) a spike that the loss is looked at.
LOSS_JUMP_WINDOW = 3

# ------------------------------------------------------------------ Transformer logit scales
#: Attention logit (max |q.k|/sqrt(d_head)) at or above which the softmax is one-hot for any
#: context: a logit gap of 50 leaves exp(-50) ~ 2e-22 to every other key, so the attention's
#: gradient vanishes (attention entropy collapse; Wortsman et al. 2023 §3.1, Fig. 3, where
#: unstable runs reach 1e3-1e4; Dehghani et al. 2023 saw logits of ~5e4 at 8B parameters).
ATTN_LOGIT_WARNING = 50.0
#: ... and the growth factor over the run (last recorded over first) that makes it "growth"
#: rather than a scale the model started with.
ATTN_LOGIT_GROWTH = 3.0
#: |log Z| of the output softmax at or above which the output logits have diverged: z-loss
#: exists to keep log Z near 0 (Wortsman et al. 2023 §3.2 after PaLM, Chowdhery et al. 2022);
#: at |log Z| = 30 the logits are e^30 ~ 1e13, far past float16's range (e^11) and bfloat16's
#: 8-bit resolution of a logit of that size (a step of 0.125).
OUTPUT_LOGZ_WARNING = 30.0
#: ... and the drift of log Z (nats, last recorded minus first, either sign) that makes it a
#: divergence rather than a large vocabulary (log Z starts near log V for small logits).
OUTPUT_LOGZ_DRIFT = 10.0
#: The z-loss coefficient of Wortsman et al. 2023 and PaLM: loss += 1e-4 * (log Z)^2.
Z_LOSS_COEFFICIENT = 1e-4

# ------------------------------------------------------------------ divergence (issue 12)
#: The loss diverges when the median of its last :data:`DIVERGE_WINDOW` finite values is this
#: many times its best so far (and above its first value): "well above its best".
DIVERGE_LOSS_FACTOR = 3.0
#: How many of the last finite losses the divergence test takes the median of.
DIVERGE_WINDOW = 3
#: ``||dW|| / ||W||`` per step above this is a learning rate too high for that layer (a
#: healthy run moves its weights by about 1e-3 of their norm per step).
UPDATE_RATIO_HIGH = 1e-2
#: The update-to-weight ratio a learning-rate cut aims for.
UPDATE_RATIO_TARGET = 1e-3

# ------------------------------------------------------------------ mixed precision (issue 12)
#: Skipped steps after the scale has settled (its first unskipped step) are persistent above
#: this share of those steps (and at least :data:`AMP_PERSIST_MIN` of them).
AMP_PERSIST_SHARE = 0.05
AMP_PERSIST_MIN = 2
