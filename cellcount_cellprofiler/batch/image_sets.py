"""The image sets a batch will run: their numbers, groups and file names, found as CellProfiler finds them.

A .cppipe (or .json) pipeline gets its file list from the image folder, exactly as ``cellprofiler -i`` builds it;
a Batch_data.h5 made by CreateBatchFiles already holds its image sets. Runs in the headless CellProfiler that
:func:`cellcount_cellprofiler.pipeline_loading.headless_cellprofiler` started.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ImageSets:
    """Image set numbers in order, the group of each (None without grouping) and a name for each (file names)."""

    numbers: list
    groups: list
    names: list
    file_list: list  # paths of the input files (empty for a Batch_data.h5, which holds its own list)

    def units(self):
        """Lists of image numbers that must run in one CellProfiler process: whole groups, else single sets."""
        if all(group is None for group in self.groups):
            return [[number] for number in self.numbers]
        units, previous = [], object()
        for number, group in zip(self.numbers, self.groups):
            if group != previous:
                units.append([])
                previous = group
            units[-1].append(number)
        return units

    def name_of(self, number):
        return self.names[self.numbers.index(number)]


def is_batch_file(path):
    """True for an HDF5 file (a Batch_data.h5), False for a text pipeline."""
    import h5py

    return h5py.is_hdf5(str(path))


def list_image_files(folder):
    """Every file under ``folder``, as ``cellprofiler -i`` adds them to the file list."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Image folder {folder} is not a folder. Give the folder that holds the images (-i).")
    return sorted(os.path.join(directory, name) for directory, _, names in os.walk(folder.resolve())
                  for name in names if os.path.isfile(os.path.join(directory, name)))


def find_image_sets(pipeline_path, loaded_pipeline, image_folder=None):
    """The image sets of a pipeline: from a Batch_data.h5's measurements or from ``image_folder``'s files."""
    if is_batch_file(pipeline_path):
        from cellprofiler_core.measurement import Measurements

        measurements = Measurements(filename=str(pipeline_path), mode="r")
        try:
            return _image_sets_from(measurements, file_list=[])
        finally:
            measurements.close()
    if image_folder is None:
        raise ValueError(f"{pipeline_path} is a pipeline without a file list: give the image folder with -i.")
    _refuse_create_batch_files(pipeline_path, loaded_pipeline)
    files = list_image_files(image_folder)
    return _prepare_run(pipeline_path, loaded_pipeline, files, image_folder)


def _refuse_create_batch_files(pipeline_path, pipeline):
    if any(module.enabled and module.is_create_batch_module() for module in pipeline.modules()):
        raise ValueError(f"{pipeline_path} ends in CreateBatchFiles, so a run only writes Batch_data.h5. Run it "
                         "once and give `cellcount batch` the Batch_data.h5 it writes, or disable CreateBatchFiles.")


def _prepare_run(pipeline_path, pipeline, files, image_folder):
    from cellprofiler_core.measurement import Measurements
    from cellprofiler_core.workspace import Workspace

    pipeline.add_pathnames_to_file_list(files)
    measurements = Measurements()
    try:
        if not pipeline.prepare_run(Workspace(pipeline, None, None, None, measurements, None)):
            raise ValueError(f"CellProfiler could not make image sets from {pipeline_path} and the {len(files)} "
                             f"files in {image_folder}; open it in CellProfiler to see why (NamesAndTypes, Groups).")
        image_sets = _image_sets_from(measurements, file_list=files)
    finally:
        measurements.close()
    if not image_sets.numbers:
        raise ValueError(f"{pipeline_path} makes no image sets from the files in {image_folder}. Check the folder "
                         "and the pipeline's Images and NamesAndTypes filters.")
    return image_sets


def _image_sets_from(measurements, file_list):
    numbers = [int(number) for number in measurements.get_image_numbers()]
    grouped = bool(measurements.get_grouping_tags_only())
    groups = (list(measurements.get_measurement("Image", "Group_Number", numbers)) if grouped
              else [None] * len(numbers))
    file_features = sorted(feature for feature in measurements.get_feature_names("Image")
                           if feature.startswith("FileName_"))
    columns = [measurements.get_measurement("Image", feature, numbers) for feature in file_features]
    names = [";".join(str(column[index]) for column in columns) or f"image set {number}"
             for index, number in enumerate(numbers)]
    return ImageSets(numbers, [None if group is None else int(group) for group in groups], names, list(file_list))
