"""cellcount's CellProfiler side: the `cellcount` command, building pipelines, and where the plugins live.

CellProfiler is imported only inside the functions that need it, so `cellcount count` works without it.
"""
