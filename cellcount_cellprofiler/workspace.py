"""Running one CellProfiler module on in-memory images, outside a pipeline run (tests and benchmarks)."""


def single_image_workspace(module, images):
    """A one-image-set Workspace holding ``images`` ({name: array}) for ``module``."""
    from cellprofiler_core.image import Image, ImageSetList
    from cellprofiler_core.measurement import Measurements
    from cellprofiler_core.object import ObjectSet
    from cellprofiler_core.pipeline import Pipeline
    from cellprofiler_core.workspace import Workspace

    image_set_list = ImageSetList()
    image_set = image_set_list.get_image_set(0)
    for name, pixels in images.items():
        image_set.add(name, Image(pixels))
    pipeline = Pipeline()
    pipeline.add_module(module)
    return Workspace(pipeline, module, image_set, ObjectSet(), Measurements(), image_set_list)
