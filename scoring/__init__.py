"""The scoring core: encrypted linear scoring with CKKS, shared by every host and the client.

Nothing in this package imports Azure; hosts convert their transport to
``scoring.service.ScoringService`` calls.
"""
