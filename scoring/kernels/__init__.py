"""The encrypted affine maps: one record per request (``single``), a batch in coefficient
lanes (``lanes``), and the masked re-randomization both apply to every result (``masking``)."""
