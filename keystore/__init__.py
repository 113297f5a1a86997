"""Key bundles in Azure Blob Storage, for the hosts and the client alike.

* :mod:`keystore.connection`: the one rule that turns a connection setting name
  (``SCORING_STORAGE``) into a storage client, the same identity on every path;
* :mod:`keystore.blobs`: a bundle as the service reads it, uploads, deletions, and the
  ownership challenge kept beside a bundle.

Nothing here logs a connection string, key or token.
"""
