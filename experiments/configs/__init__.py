"""The named run presets of `python -m experiments`, one module per family.

- `victims`: `VICTIMS`, the victim training runs of `victim train --config NAME`.
- `studies`: `STUDIES`, the studies of `demo` and `run NAME` (`list` shows them).
- `overrides`: `--set a.b=value`, a field of a resolved config replaced by its dotted path.

The library holds the config classes and the published attack defaults; what a run is named
and sized to lives here.
"""

from experiments.configs.studies import STUDIES, get_study
from experiments.configs.victims import VICTIMS, get_victim_config

__all__ = ["STUDIES", "VICTIMS", "get_study", "get_victim_config"]
