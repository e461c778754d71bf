"""TFDS builders of the real re-ID datasets, read from where the user unpacked them.

Attributes are joined by identity from the packaged tables, in their raw column order; MSMT17
has none (length 0). Files that cannot be parsed or decoded are left out with a warning naming
them, and listed in the dataset's metadata (`rejected_files`).
"""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from invfeat.data.attributes import AttributeTable, attribute_schema, load_attribute_table
from invfeat.data.builders.common import ReidBuilder, ReidRecord, decode_image
from invfeat.data.datasets import SPLITS
from invfeat.data.layouts import ImageEntry, LayoutWarning, parse

_ATTRIBUTE_SPLIT = {"train": "train", "val": "train", "query": "test", "gallery": "test"}
_OPTIONAL_SPLITS = ("val",)
_MAX_LISTED = 10

_INSTRUCTIONS = """\
Download {what} yourself (it is not redistributed) and unpack it; the manual dir is the folder
that holds `{folder}` (or its parent).

Expected layout:
{layout}
"""


class _RealReidBuilder(ReidBuilder, skip_registration=True):
    """Shared logic: parse the layout, join attributes, read and check every image."""

    ATTRIBUTE_DATASET: ClassVar[str | None] = None  # name of the attribute table, if any

    def _split_records(self, dl_manager: Any) -> dict[str, Iterable[ReidRecord]]:
        layout = parse(self.name, pathlib.Path(dl_manager.manual_dir))
        if not layout.splits:  # else TFDS records an empty dataset that later builds reuse
            examples = ", ".join(name for name, _ in layout.rejected[:3])
            raise ValueError(
                f"{layout.root}: no {self.name} image found ({len(layout.rejected)} files left "
                f"out{': ' + examples if examples else ''}); is this the {self.name} folder?"
            )
        # refused before anything is written: TFDS would keep the incomplete dataset for reuse
        absent = [s for s in self.SPLITS if s not in layout.splits and s not in _OPTIONAL_SPLITS]
        if absent:
            why = "; ".join(f"{s}: {layout.missing.get(s, 'no images')}" for s in absent)
            raise ValueError(
                f"{layout.root}: {self.name} split(s) {', '.join(absent)} missing ({why}); "
                "unpack the whole dataset there and build again"
            )
        self.info.metadata["rejected_files"] = [list(r) for r in layout.rejected]
        self.info.metadata["junk_images_dropped"] = layout.junk
        self.info.metadata["identities_without_attributes"] = {}
        return {
            split: self._records(split, entries, self._table(split))
            for split, entries in layout.splits.items()
        }

    def _table(self, split: str) -> AttributeTable | None:
        if self.ATTRIBUTE_DATASET is None:
            return None
        return load_attribute_table(self.ATTRIBUTE_DATASET, _ATTRIBUTE_SPLIT[split])

    def _records(
        self, split: str, entries: list[ImageEntry], table: AttributeTable | None
    ) -> Iterator[ReidRecord]:
        if table is None:
            attributes_NA = np.zeros([len(entries), 0], np.int64)
        else:
            attributes_NA = table.lookup([e.identity for e in entries])
            self._check_coverage(split, entries, table)
        unreadable = []
        for entry, attributes in zip(entries, attributes_NA, strict=True):
            data = entry.path.read_bytes()
            try:
                decode_image(data, entry.file_name)
            except ValueError as e:
                unreadable.append(entry.file_name)
                warnings.warn(f"{entry.path}: left out: {e}", LayoutWarning, stacklevel=2)
                continue
            yield ReidRecord(data, entry.identity, entry.camera, attributes, entry.file_name)
        self.info.metadata["rejected_files"] += [[f, "cannot decode"] for f in unreadable]

    def _check_coverage(self, split: str, entries: list[ImageEntry], table: AttributeTable) -> None:
        """Warn about identities (not distractors) that have no row in the attribute table.

        Their attributes are all -1, as those of Market-1501's distractors (identity 0); in the
        published datasets no other identity lacks a row (DukeMTMC's test table covers its 408
        distractors too).
        """
        uncovered = sorted(
            {e.identity for e in entries if not e.distractor} - set(table.identities.tolist())
        )
        if not uncovered:
            return
        self.info.metadata["identities_without_attributes"][split] = uncovered
        listed = ", ".join(map(str, uncovered[:_MAX_LISTED]))
        more = f" and {len(uncovered) - _MAX_LISTED} more" if len(uncovered) > _MAX_LISTED else ""
        warnings.warn(
            f"{self.name}/{split}: {len(uncovered)} identities have no row in the "
            f"{table.dataset} {table.split} attribute table ({listed}{more}); their attributes "
            "are -1 (unknown). Is this the published copy of the dataset?",
            LayoutWarning,
            stacklevel=3,
        )


class Market1501(_RealReidBuilder):
    """Market-1501 (Zheng et al., ICCV 2015) with Market-1501_Attribute (Lin et al.)."""

    name = "market1501"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Market-1501-v15.09.15, raw attributes."}
    SPLITS = SPLITS
    ATTRIBUTES = attribute_schema("market1501")
    ATTRIBUTE_DATASET = "market1501"
    DESCRIPTION = "Market-1501 person re-ID crops, 6 cameras; identity 0 = distractor."
    HOMEPAGE = "https://zheng-lab-anu.github.io/Project/project_reid.html"
    CITATION = """@inproceedings{zheng2015scalable,
  title={Scalable person re-identification: A benchmark},
  author={Zheng, Liang and Shen, Liyue and Tian, Lu and Wang, Shengjin and Wang, Jingdong and Tian, Qi},
  booktitle={ICCV}, year={2015}}"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(
        what="Market-1501-v15.09.15.zip",
        folder="Market-1501-v15.09.15",
        layout="  Market-1501-v15.09.15/{bounding_box_train,bounding_box_test,query}/"
        "PPPP_cCsS_FFFFFF_NN.jpg",
    )


class DukemtmcReid(_RealReidBuilder):
    """DukeMTMC-reID (Zheng et al., ICCV 2017) with DukeMTMC-attribute (Lin et al.)."""

    name = "dukemtmc_reid"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "DukeMTMC-reID, raw attributes."}
    SPLITS = SPLITS
    ATTRIBUTES = attribute_schema("dukemtmc_reid")
    ATTRIBUTE_DATASET = "dukemtmc_reid"
    DESCRIPTION = "DukeMTMC-reID person re-ID crops, 8 cameras (CC BY-NC-SA 4.0)."
    HOMEPAGE = "https://github.com/layumi/DukeMTMC-reID_evaluation"
    CITATION = """@inproceedings{ristani2016MTMC,
  title={Performance Measures and a Data Set for Multi-Target, Multi-Camera Tracking},
  author={Ristani, Ergys and Solera, Francesco and Zou, Roger and Cucchiara, Rita and Tomasi, Carlo},
  booktitle={ECCV Workshops}, year={2016}}"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(
        what="DukeMTMC-reID.zip",
        folder="DukeMTMC-reID",
        layout="  DukeMTMC-reID/{bounding_box_train,bounding_box_test,query}/PPPP_cC_fFFFFFFF.jpg",
    )


class Msmt17(_RealReidBuilder):
    """MSMT17_V2 or _V1 (Wei et al., CVPR 2018); no attribute annotations (attribute length 0)."""

    name = "msmt17"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "MSMT17_V2 lists."}
    SPLITS = (*SPLITS[:1], "val", *SPLITS[1:])  # val after train, as MSMT17 lists them
    ATTRIBUTES = ()
    DESCRIPTION = (
        "MSMT17 (V2 or V1) person re-ID crops, 15 cameras. Test identities are numbered from 0"
        " again: they are other people than the train identities with the same numbers."
    )
    HOMEPAGE = "https://www.pkuvmc.com/dataset.html"
    CITATION = """@inproceedings{wei2018person,
  title={Person Transfer GAN to Bridge Domain Gap for Person Re-Identification},
  author={Wei, Longhui and Zhang, Shiliang and Gao, Wen and Tian, Qi},
  booktitle={CVPR}, year={2018}}"""
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS.format(
        what="MSMT17_V2 or MSMT17_V1 (by request from its authors)",
        folder="MSMT17_V2",
        layout="  MSMT17_V2/list_{train,val,query,gallery}.txt  (lines: 'PPPP/name.jpg PID')\n"
        "  MSMT17_V2/mask_train_v2/PPPP/PPPP_NNN_CC_*.jpg, MSMT17_V2/mask_test_v2/...\n"
        "  (MSMT17_V1: the same lists over MSMT17_V1/train/ and MSMT17_V1/test/)",
    )
