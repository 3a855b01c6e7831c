"""What a trace holds: the columns, the SQL tables and every quantity with its meaning and unit.

A quantity name is written once, here; code compares with :class:`Quantity` members (a ``str``
enum, so ``frame["quantity"] == Quantity.GAIN`` works on the stored text). Norms are Euclidean
(root of summed squares) over all entries of the tensor named; "signal" is the backward signal,
the gradient of the loss with respect to a module's output (``signal_out = ||dL/dy||``) or input
(``signal_in = ||dL/dx||``), in units of the loss per unit activation.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["COLUMNS", "MODULE_LEVEL", "SCHEMA_VERSION", "Quantity", "Row"]

SCHEMA_VERSION = 1
COLUMNS = ["step", "module", "parameter", "quantity", "idx", "value"]

#: one long-form record: (step, module, parameter, quantity, idx, value)
Row = tuple[int, str, str, str, int | None, float]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS modules (
    ord INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
    activation TEXT, n_params INTEGER NOT NULL, info TEXT
);
CREATE TABLE IF NOT EXISTS records (
    step INTEGER NOT NULL, module TEXT NOT NULL, parameter TEXT NOT NULL,
    quantity TEXT NOT NULL, idx INTEGER, value REAL
);
"""


class Quantity(str, Enum):
    """Every recorded quantity; ``.meaning`` and ``.unit`` say what it is.

    >>> Quantity.GAIN == "gain", Quantity("signal_out").unit
    (True, 'loss / activation')
    """

    def __new__(cls, value: str, meaning: str, unit: str) -> Quantity:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.meaning = meaning  # type: ignore[attr-defined]
        obj.unit = unit  # type: ignore[attr-defined]
        return obj

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    GRAD_NORM = (
        "grad_norm",
        "||dL/dW|| of one parameter (or of a module's own parameters)",
        "loss / weight",
    )
    GRAD_NORM_TOTAL = (
        "grad_norm_total",
        "global gradient norm over every parameter",
        "loss / weight",
    )
    PARAM_NORM = ("param_norm", "||W|| of one parameter", "weight")
    UPDATE_RATIO = (
        "update_ratio",
        "||W_after - W_before|| / ||W_before|| of one optimizer step",
        "1",
    )
    SIGNAL_OUT = (
        "signal_out",
        "backward signal at a module's output, ||dL/dy||",
        "loss / activation",
    )
    SIGNAL_IN = (
        "signal_in",
        "backward signal at a module's input, ||dL/dx|| (through it alone)",
        "loss / activation",
    )
    GAIN = ("gain", "signal_in / signal_out: the module's backward gain", "1")
    CALLS = ("calls", "times the module ran in the step's forward passes", "count")
    DPHI_MEAN = ("dphi_mean", "mean local slope phi'(x) of an activation", "1")
    DPHI_SQ_MEAN = ("dphi_sq_mean", "mean squared slope phi'(x)^2", "1")
    SATURATED_FRAC = (
        "saturated_frac",
        "share of entries whose slope is below 1% of the maximum (inactive side for the ReLU family)",
        "fraction",
    )
    PREACT_MS = ("preact_ms", "mean square of the pre-activation, q", "activation^2")
    DEAD_FRAC = (
        "dead_frac",
        "share of units whose output is zero on every sample of the batch",
        "fraction",
    )
    ACT_MEAN = ("act_mean", "mean activation output", "activation")
    ACT_STD = ("act_std", "standard deviation of the activation output", "activation")
    INPUT_GRAD_T = (
        "input_grad_t",
        "||dL/dx_t|| at each time step t of an RNN's input sequence",
        "loss / activation",
    )
    HIDDEN_GRAD_T = (
        "hidden_grad_t",
        "||dL/dh_t|| at each time step (total, through time)",
        "loss / activation",
    )
    HIDDEN_GRAD_T_LAST = (
        "hidden_grad_t_last",
        "||dL/dh_t|| of the last step's loss alone",
        "loss / activation",
    )
    LOSS = ("loss", "the observed training loss", "loss")
    AMP_UNSCALED = ("amp_unscaled", "1 when signals were divided by the GradScaler's scale", "flag")
    AMP_SCALE = ("amp_scale", "the GradScaler's loss scale used at the iteration", "1")
    STEP_SKIPPED = (
        "step_skipped",
        "1 when the GradScaler skipped optimizer.step() at the iteration (inf/NaN found), else 0",
        "flag",
    )
    AMP_OVERFLOW = (
        "amp_overflow",
        "a step the GradScaler skipped: the first module whose fp16 forward output (or, when "
        "none, backward gradient) overflowed; module '' when only a parameter gradient did",
        "flag",
    )
    NONFINITE = ("nonfinite", "a non-finite event (1); detail in the event rows", "flag")
    NONFINITE_FORWARD = (
        "nonfinite_forward",
        "first module whose forward output was NaN/Inf",
        "flag",
    )
    NONFINITE_BACKWARD = (
        "nonfinite_backward",
        "first module whose backward produced NaN/Inf",
        "flag",
    )
    NONFINITE_GRADIENT = ("nonfinite_gradient", "a parameter gradient that is NaN/Inf", "flag")
    OUTPUT_RMS = (
        "output_rms",
        "root mean square of the model's output (its first floating-point tensor, float64; "
        "over all forward calls of the step): tells a loss that overflowed on huge outputs "
        "from one that is undefined at a boundary",
        "activation",
    )
    NONFINITE_LOSS = (
        "nonfinite_loss",
        "the loss value, or its gradient w.r.t. the model output, was NaN/Inf while every "
        "module output was finite: the NaN was born in the loss",
        "flag",
    )
    ATTN_LOGIT_MAX = (
        "attn_logit_max",
        "max |q.k|/sqrt(d_head) of an attention module over heads and query/key pairs of the "
        "first samples (Wortsman et al. 2023, attention logit growth)",
        "logit",
    )
    OUTPUT_LOGZ_MAX = (
        "output_logz_max",
        "max over output rows of log Z = logsumexp of the model's output logits "
        "(Wortsman et al. 2023, output logit divergence)",
        "logit",
    )
    OUTPUT_LOGZ_MEAN = ("output_logz_mean", "mean over output rows of log Z", "logit")


#: Module-level quantities that make up the per-layer table (one value per module and step).
MODULE_LEVEL: tuple[Quantity, ...] = (
    Quantity.GRAD_NORM,
    Quantity.SIGNAL_OUT,
    Quantity.SIGNAL_IN,
    Quantity.GAIN,
    Quantity.DPHI_MEAN,
    Quantity.DPHI_SQ_MEAN,
    Quantity.SATURATED_FRAC,
    Quantity.DEAD_FRAC,
    Quantity.PREACT_MS,
    Quantity.ACT_MEAN,
    Quantity.ACT_STD,
)
