"""The embedded synthetic re-ID world: procedural pedestrians with the real attribute tables.

`world` holds the people and domains (synth_market, synth_duke, synth_msmt), `appearance` what
they look like, `person` and `scene` draw them, `protocol` makes the train/query/gallery splits,
`preview` a contact sheet. The TFDS builders are in `invfeat.data.builders.synth`.
"""

from invfeat.data.synth.protocol import SynthConfig, SynthImage, plan, render_shot, render_split
from invfeat.data.synth.world import DOMAINS, Domain, Identity, domain

__all__ = [
    "DOMAINS",
    "Domain",
    "Identity",
    "SynthConfig",
    "SynthImage",
    "domain",
    "plan",
    "render_shot",
    "render_split",
]
