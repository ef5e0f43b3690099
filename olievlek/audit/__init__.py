"""The transparency audit log: an append-only Merkle tree (RFC 9162) of every decision.

``hashing`` (leaf and node hashes), ``tree`` (index maths: which stored subtrees a
root or proof needs), ``verify`` (pure proof checks shared by nodes and the CLI),
``store`` (the SQL-backed log inside the broker's single database).
"""
