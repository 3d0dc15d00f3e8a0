"""Deprecated import paths of the HeteroCloud interface, kept for one release: `dgpg.envs.cloud`
(now `dgpg.domains.cloud.env`) and `dgpg.envs.pettingzoo.parallel_env` (now
`dgpg.pettingzoo.parallel_env("cloud", ...)`). Each warns (DeprecationWarning) when used."""
