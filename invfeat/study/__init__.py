"""The study: stages from data to report, one named configuration per run.

- `config`: `StudyConfig`.
- `domain`: the attack domain served by the victim (plaintext and one-time ciphertext).
- `stages`: named stages done once, so a killed run resumes.
- `run`: `run_study`, `check_inputs`.
- `report`: report.json, report.md and the figures, from a results dict.

Each submodule loads on first use.
"""

from invfeat import lazy_submodules

SUBMODULES = ("config", "domain", "report", "run", "stages")
__all__ = list(SUBMODULES)
__getattr__, __dir__ = lazy_submodules(__name__, SUBMODULES)
