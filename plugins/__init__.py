"""CellProfiler plugin folder of cellcount: point CellProfiler's plugins directory here.

CellProfiler imports ``deepsegment.py``, ``deepthreshold.py`` and ``deepcount.py`` as modules; files starting
with an underscore are helpers they share.
"""
