"""The data-sharing policy: a signed bundle of rules, and everything read from it.

The broker enforces it (``Bundle.decide``); ``olievlek policy`` checks, tests,
explains, draws and diffs it; the audit reports read it. Semantics are in
``docs/policy.md``.

Example::

    bundle = Bundle.load(Path("policies/flanders"))
    decision = bundle.decide(Request(kind="alert.move", sender=OrgId("gent"),
                                     recipients=(OrgId("antwerpen"),), rule_id="move-alert"))
"""

from .diagnostics import BundleError, Diagnostic
from .engine import Decision, Request
from .loader import Bundle, bundle_name, digest_of
from .model import Organisation, Rule

__all__ = ["Bundle", "BundleError", "Decision", "Diagnostic", "Organisation", "Request", "Rule", "bundle_name",
           "digest_of"]
