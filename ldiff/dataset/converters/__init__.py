"""Converters from downloadable MS-lesion datasets to ldiff's (nnU-Net v2's) raw layout.

``CONVERTERS`` maps the FORMAT name of ``ldiff_convert`` to its converter; adding a format means adding
a module and a line here. See ``documentation/converters.md`` for each format's files and rules.
"""
from ldiff.dataset.converters.bids import BIDSConverter
from ldiff.dataset.converters.common import Converter, ConvertOptions
from ldiff.dataset.converters.isbi2015 import ISBI2015Converter
from ldiff.dataset.converters.ljubljana import LjubljanaConverter
from ldiff.dataset.converters.msseg2016 import MSSEG2016Converter
from ldiff.dataset.converters.mslesseg import MSLesSegConverter
from ldiff.dataset.converters.wmh2017 import WMH2017Converter

CONVERTERS: dict[str, Converter] = {
    "msseg2016": MSSEG2016Converter(),
    "isbi2015": ISBI2015Converter(),
    "ljubljana": LjubljanaConverter(),
    "mslesseg": MSLesSegConverter(),
    "wmh2017": WMH2017Converter(),
    "bids": BIDSConverter(),
}

__all__ = ["CONVERTERS", "ConvertOptions", "Converter"]
