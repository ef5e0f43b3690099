"""The witness's store: the latest checkpoint it cosigned per log."""
