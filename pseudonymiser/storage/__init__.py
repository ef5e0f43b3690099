"""The operator's store: its key share's state and the versions it accepted."""
