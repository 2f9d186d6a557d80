"""Helpers the tests share, as plain functions (tests/conftest.py puts tests/ on sys.path and wraps them in
fixtures of the same names): `from support.probe import parse_probe, start_holder`.

  commands  fcsp_command(): the installed `fcsp` command
  probe     parse_probe(stdout): fcsp-probe's result lines as dicts; start_holder(probe, env, *cmds): a probe
            that holds what it allocated until its stdin closes
"""
