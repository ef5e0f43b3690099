"""olievlek: federated exchange of pseudonymised case summaries between LIVCs.

The core package. It holds the wire stubs (``olievlek.v1``), identities and the
development PKI, envelope signing and strict validation, the policy engine,
pseudonyms and storage helpers. It imports none of the services
(``olievlek.node``, ``olievlek.broker``, ``olievlek.cli``); a test enforces that.
"""

__version__ = "0.1.0"
