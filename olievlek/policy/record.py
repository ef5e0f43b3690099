"""A GDPR art. 30 record of processing activities, generated from the bundle."""

from __future__ import annotations

from .loader import Bundle


def record(bundle: Bundle) -> str:
    """Markdown: one processing activity per allow rule."""
    lines = [
        f"# Record of processing activities — bundle {bundle.name} v{bundle.version}",
        "",
        f"Generated from bundle digest `{bundle.digest}`, valid until {bundle.expires:%Y-%m-%d}. "
        "Identifying data stays with the holding organisation; what is listed here is what may cross "
        "between organisations, pseudonymised.",
        "",
        "| activity (rule) | purpose | categories of data | categories of senders | categories of recipients "
        "| lawful basis | agreement | retention at recipient | delivery time-to-live |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rule in sorted(bundle.rules.values(), key=lambda r: r.id):
        if not rule.allows:
            continue
        senders = ", ".join(sorted({bundle.orgs[o].kind.value for o in rule.senders}))
        recipients = ", ".join(sorted(rule.recipient_kinds)) if rule.recipient_kinds else "any"
        if rule.recipient_group:
            recipients += f" (members of {rule.recipient_group})"
        agreement = "required" if rule.agreement.required else "not required"
        lines.append(
            f"| {rule.id} — {rule.description} | {rule.purpose} | {', '.join(rule.fields)} | {senders} "
            f"| {recipients} | {rule.lawful_basis} | {agreement} | {rule.retention_days} days "
            f"| {rule.ttl_hours} h |"
        )
    denies = [r for r in bundle.rules.values() if not r.allows]
    if denies:
        lines += ["", "## Explicit prohibitions", ""]
        lines += [f"- **{r.id}**: {r.description}" for r in sorted(denies, key=lambda r: r.id)]
    return "\n".join(lines) + "\n"
