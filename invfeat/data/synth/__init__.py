"""The embedded synthetic re-ID world: procedural pedestrians with the real attribute tables.

`world` holds the people and domains, `appearance` what they look like; `body` (pose, proportions,
joints), `person` (body and garments), `head_and_bags` and `scene` draw them; `protocol` makes the
splits, `preview` a contact sheet; the builders are in `invfeat.data.builders.synth`.
"""

from invfeat.data.synth.protocol import SynthConfig, SynthImage, plan, render_shot, render_split
from invfeat.data.synth.world import DOMAINS, Identity, SynthDomain, domain

__all__ = [
    "DOMAINS",
    "Identity",
    "SynthConfig",
    "SynthDomain",
    "SynthImage",
    "domain",
    "plan",
    "render_shot",
    "render_split",
]
