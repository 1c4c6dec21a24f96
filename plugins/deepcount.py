"""
DeepCount
=========

**DeepCount** estimates the number of cells in an image with a counting network, without segmenting
individual cells: a regression count that stays reliable where cells crowd and touch. Run it beside
IdentifyPrimaryObjects or DeepSegment + DeepThreshold to compare counts in one pipeline.

The bundled counter is size-agnostic: it predicts a cell density map whose sum is the count, so images
of any size work. A counter whose card says it reads masks (DeepCellCount's regressor) takes a binary
image, for example DeepThreshold's saved foreground.

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

-  *DeepCount_<name>*: the estimated number of cells in the image (a decimal number).
"""

from cellprofiler_core.constants.measurement import COLTYPE_FLOAT, IMAGE
from cellprofiler_core.module import Module
from cellprofiler_core.setting.subscriber import ImageSubscriber
from cellprofiler_core.setting.text import Alphanumeric

from _model_settings import ModelSettings
from _run_errors import names_image_set
from cellcount_core.models.bundled import DEFAULT_COUNTER

CATEGORY = "DeepCount"


class DeepCount(ModelSettings, Module):
    module_name = "DeepCount"
    category = "Measurement"
    variable_revision_number = 3
    model_kind = "counter"
    default_model = DEFAULT_COUNTER
    cell_size_note = """ For DeepCount, the segmentation network measures the cells, and the image is
reduced only where they are larger than the counter's own band (8-48 pixels for the bundled counter: it counts
blurred nuclei of about 40 pixels best at their own size). *Automatic* also checks the counter's own
density map where the image kept its size: where the map says the nuclei are smaller than the counter
counts well (as on many DSB2018 images reduced to half their size), the image is counted again enlarged x2.
The limit is the counter's own, in its model card (small_density_diameter: 38 pixels of the map's measure for
the bundled counter; a counter whose card has none is never enlarged), and cells the segmentation network
measured as large are never enlarged past the counter's band. Those images take about five times the counter's time (the second pass has four times the pixels); the check
itself costs nothing more.
Images of more than 16.8 million pixels (4096 x 4096) are not enlarged, to bound the memory used."""

    def create_settings(self):
        self.x_name = ImageSubscriber(
            "Select the image to count",
            doc="The image of cells (or, for a counter that reads masks, a binary image of the cells).",
        )
        self.count_name = Alphanumeric(
            "Name the count",
            "Nuclei",
            doc="The count is saved as the image measurement DeepCount_<name>.",
        )
        self.create_model_settings()

    def settings(self):
        return ([self.x_name, self.count_name] + self.model_settings() + self.cell_size_settings()
                + self.tiling_settings())

    def visible_settings(self):
        return [self.x_name, self.count_name] + self.visible_model_settings() + self.visible_cell_size_settings()

    @names_image_set
    def run(self, workspace):
        from cellcount_core.images.image_checks import check_image
        from cellcount_core.running.inference import predict_count_at_cell_scale

        image = workspace.image_set.get_image(self.x_name.value)
        if image.volumetric:
            raise ValueError(f"DeepCount got a 3-D image '{self.x_name.value}'; it counts 2-D images.")
        card = self.model_card()
        check_image(image.pixel_data, source=f"image '{self.x_name.value}'", masks_allowed=card.input == "mask")
        count, _ = predict_count_at_cell_scale(
            image.pixel_data, model=self.model_path(), device=self.device.value, cell_size=self.cell_size(),
            **self.tiling(),
        )
        workspace.measurements.add_image_measurement(self.count_feature(), float(count))
        if self.show_window:
            workspace.display_data.image = image.pixel_data
            workspace.display_data.count = float(count)

    def display(self, workspace, figure):
        figure.set_subplots((1, 1))
        figure.subplot_imshow_grayscale(
            0, 0, workspace.display_data.image,
            title=f"{self.x_name.value}: {workspace.display_data.count:.1f} cells ({self.count_feature()})",
        )

    def count_feature(self):
        return f"{CATEGORY}_{self.count_name.value}"

    def get_measurement_columns(self, pipeline):
        return [(IMAGE, self.count_feature(), COLTYPE_FLOAT)]

    def get_categories(self, pipeline, object_name):
        return [CATEGORY] if object_name == IMAGE else []

    def get_measurements(self, pipeline, object_name, category):
        return [self.count_name.value] if object_name == IMAGE and category == CATEGORY else []
