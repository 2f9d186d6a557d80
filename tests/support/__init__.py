"""Helpers the tests share, as plain functions and classes; tests/conftest.py puts tests/ on sys.path and
wraps them in fixtures of the same names (`from support.probe import parse_probe, start_holder`).

  native    the native parts under test: the installed package, or a sanitizer build (FCSP_TEST_SANITIZE)
  simnode   simulated-node environments (make_sim_env) and the simulator's live/peak counters (sim_stats)
  probe     fcsp-probe: run_probe, parse_probe (its output as dicts), start_holder (a probe holding memory)
  daemon    NodeDaemon: a running `fcsp node`
  commands  fcsp_command(): the installed `fcsp` command
  users     LocalUser and the two test users (fcsp-test-a, fcsp-test-b)
"""
