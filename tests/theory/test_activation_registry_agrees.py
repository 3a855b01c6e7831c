"""Theory's numpy activations agree with the torch derivatives of gradmedic.nn.activations.

Every kind that theory models (``theory_params is not None``) is built as a module, its theory
spec is derived the way the Monitor derives it (:func:`gradmedic.nn.activations.theory_spec_from`
of the module's parameters), and theory's ``phi'`` must equal the registry's torch derivative on
a grid over [-6, 6], for the defaults and for non-default parameters.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gradmedic import theory
from gradmedic.nn.activations import KINDS, params_of, theory_spec_from

MODELLED = [k for k in KINDS.values() if k.theory_params is not None]
CASES = [(k.name, {}) for k in MODELLED] + [
    ("softplus", {"beta": 2.0}),
    ("softplus", {"beta": 0.5}),
    ("hardtanh", {"min_val": -2.0, "max_val": 2.0}),
    ("leaky_relu", {"negative_slope": 0.2}),
    ("elu", {"alpha": 0.5}),
]
X = np.linspace(-6.0, 6.0, 2401)  # step 0.005: hits 0, +-1, +-2, +-3 and the points between


def test_theory_models_exactly_the_kinds_that_say_so() -> None:
    assert {k.name for k in MODELLED} == set(theory.activation_names())
    assert len(MODELLED) == 14


@pytest.mark.parametrize(("name", "params"), CASES, ids=lambda v: str(v))
def test_theory_dphi_equals_the_torch_derivative(name: str, params: dict) -> None:
    kind = KINDS[name]
    module = kind.build(**params)
    read = params_of(module) if name != "linear" else {}
    spec = theory_spec_from(name, read)
    assert spec is not None
    act = theory.get_activation(spec)
    for pname, value in params.items():  # the spec carries the non-default parameters
        assert dict(act.params)[pname] == value
    full = {**dict(kind.params), **read}
    torch_dphi = kind.derivative(full, module).fn(torch.from_numpy(X)).double().numpy()
    np.testing.assert_allclose(act.dphi(X), torch_dphi, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("name", "params"), CASES, ids=lambda v: str(v))
def test_theory_gamma_equals_the_registry_max_slope(name: str, params: dict) -> None:
    """Pascanu's gamma = sup |phi'| (theory) against the registry's ``max_slope``. The registry
    states GELU's, SiLU's and Mish's suprema rounded; its Mish value 1.0886 is 1.0e-4 above the
    true 1.088498, hence 2e-4."""
    kind = KINDS[name]
    full = {**dict(kind.params), **params}
    spec = theory_spec_from(name, full)
    top = kind.derivative(full, kind.build(**params)).max_slope
    assert theory.get_activation(spec).gamma == pytest.approx(top, abs=2e-4)
