"""Workflows over the lower layers: training (``train``), model + data -> trace -> findings
(``checkup``) and verified treatment (``treatment``)."""
