"""
DeepSegment
===========

**DeepSegment** runs a cellcount segmentation network (a U-Net or c-ResUnet trained on fluorescent nuclei)
on a grayscale or colour image and produces a probability image: each pixel's probability, 0 to 1, of
belonging to a cell. Follow it with **DeepThreshold** to turn the probability image into objects.

Images of any size are processed in overlapping tiles whose stitched result matches a whole-image run;
beside the image and the probability image, memory holds only a few tiles. The model is loaded once per
process and kept in memory for the following images.

On a GPU, tiles run in bf16 (or fp16) and the cached GPU memory is released after each image. Several
CellProfiler workers can share one GPU: set the environment variable ``CELLCOUNT_GPU_MEMORY_FRACTION`` to
each process's share of the GPU memory before starting CellProfiler (for example 0.25 for four workers).

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

-  *DeepSegment_ModelThreshold_<output image>*: the threshold recommended by the model's card (tuned on
   validation images); DeepThreshold's *Model default* method uses it.
-  *DeepSegment_ScaleFactor_<output image>*: the factor the image was resized by before the network to bring
   its cells to the model's size (1 when it was not resized).
"""

from cellprofiler_core.constants.measurement import COLTYPE_FLOAT, IMAGE
from cellprofiler_core.image import Image
from cellprofiler_core.module import ImageProcessing
from cellprofiler_core.setting.text import Integer

from _model_settings import ModelSettings
from _run_errors import names_image_set
from cellcount_core.models.bundled import DEFAULT_SEGMENTER

CATEGORY = "DeepSegment"
MODEL_THRESHOLD = "ModelThreshold"
SCALE_FACTOR = "ScaleFactor"


class DeepSegment(ModelSettings, ImageProcessing):
    module_name = "DeepSegment"
    category = "Image Processing"
    variable_revision_number = 3
    model_kind = "segmenter"
    default_model = DEFAULT_SEGMENTER

    def create_settings(self):
        super().create_settings()
        self.x_name.doc = "The image to segment: fluorescent nuclei or cells, grayscale or colour."
        self.y_name.value = "DeepProbability"
        self.y_name.doc = "Name of the probability image (0 to 1) for DeepThreshold."
        self.create_model_settings()
        self.batch_size = Integer(
            "Tiles per batch",
            4,
            minval=1,
            doc="""\
How many tiles go through the network at once, for the manual tiling. More is faster on a GPU and
needs more memory.""",
        )

    def settings(self):
        return ([self.x_name, self.y_name] + self.model_settings() + [self.batch_size] + self.cell_size_settings()
                + self.tiling_settings())

    def visible_settings(self):
        return [self.x_name, self.y_name] + self.visible_model_settings() + self.visible_cell_size_settings()

    @names_image_set
    def run(self, workspace):
        from cellcount_core.images.image_checks import check_image
        from cellcount_core.running.inference import predict_probability_at_cell_scale

        image = workspace.image_set.get_image(self.x_name.value)
        if image.volumetric:
            raise ValueError(
                f"DeepSegment got a 3-D image '{self.x_name.value}'; it segments 2-D images. "
                "Process the planes one at a time."
            )
        check_image(image.pixel_data, source=f"image '{self.x_name.value}'")
        card = self.model_card()
        probability, scale = predict_probability_at_cell_scale(
            image.pixel_data,
            model=self.model_path(),
            device=self.device.value,
            cell_size=self.cell_size(),
            **self.tiling(),
        )
        workspace.image_set.add(self.y_name.value, Image(probability, parent_image=image, convert=False))
        workspace.measurements.add_image_measurement(
            self.threshold_feature(), float(card.default_threshold["value"])
        )
        workspace.measurements.add_image_measurement(self.feature(SCALE_FACTOR), float(scale.factor))
        if self.show_window:
            workspace.display_data.x_data = image.pixel_data
            workspace.display_data.y_data = probability
            workspace.display_data.dimensions = image.dimensions

    def feature(self, measurement):
        return f"{CATEGORY}_{measurement}_{self.y_name.value}"

    def threshold_feature(self):
        return self.feature(MODEL_THRESHOLD)

    def get_measurement_columns(self, pipeline):
        return [(IMAGE, self.feature(name), COLTYPE_FLOAT) for name in (MODEL_THRESHOLD, SCALE_FACTOR)]

    def get_categories(self, pipeline, object_name):
        return [CATEGORY] if object_name == IMAGE else []

    def get_measurements(self, pipeline, object_name, category):
        return [MODEL_THRESHOLD, SCALE_FACTOR] if object_name == IMAGE and category == CATEGORY else []

    def get_measurement_images(self, pipeline, object_name, category, measurement):
        if object_name == IMAGE and category == CATEGORY and measurement in (MODEL_THRESHOLD, SCALE_FACTOR):
            return [self.y_name.value]
        return []
