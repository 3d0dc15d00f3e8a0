"""Stable import paths of the HeteroCloud interface, kept for code written against them: the
domain itself lives in `dgpg.domains.cloud`."""
