"""The ``encrypted-inference==0.9`` API, the package the original Azure ML tutorial used, on
this project: its notebook and ``score.py`` run with only their import lines changed::

    from eicompat import EILinearRegressionClient   # was: from encrypted.inference.eiclient import ...
    from eicompat import EIServer                   # was: from encrypted.inference.eiserver import ...

Both halves share a standard encoding fixed by a record's length (:mod:`eicompat.standard`),
since the 0.9 client encrypts before it has talked to any server. The server half calls the
service's typed data plane (:class:`scoring.service.ScoringService`) like any host. New code
should use :class:`client.ScoringClient`, which learns each model's own encoding.
"""

from .client import EILinearRegressionClient
from .server import EIServer

__all__ = ["EIServer", "EILinearRegressionClient"]
