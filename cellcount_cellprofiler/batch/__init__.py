"""`cellcount batch`: headless CellProfiler runs of image-set chunks, scheduled by Dask."""
