"""
DeepThreshold
=============

**DeepThreshold** turns a probability image (from **DeepSegment**) into objects, the way
**IdentifyPrimaryObjects** turns an intensity image into objects, so every module downstream
(IdentifySecondaryObjects, MeasureObjectIntensity, RelateObjects, ExportToSpreadsheet) works unchanged.

Steps: threshold the probability image; fill holes; drop specks smaller than the cells; split touching cells
by a watershed sized by the typical cell diameter (set it, or let it be estimated from the image); optionally
discard objects outside a diameter range or touching the image border. Images larger than 2048 x 2048
pixels are post-processed in overlapping blocks, with the same objects as a whole-image run (cells across
block seams are counted once) and a few bytes of memory per pixel. On a CUDA GPU (*Device*), the whole
image is post-processed in GPU memory, with the same objects as on the CPU.

Threshold methods
^^^^^^^^^^^^^^^^^

-  *Model default*: the threshold tuned for the model on validation images (Kneedle method), taken from
   the DeepSegment measurement of the probability image.
-  *Simple (0.5)*: probability above one half.
-  *Manual*: a threshold you set.
-  *Otsu*: Otsu's threshold of the probability image.
-  *Adaptive Gaussian*: a local threshold, the Gaussian-weighted mean of a block around each pixel minus
   an offset, as in DeepCellCount.

Measurements made by this module
^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^

-  *Count_<objects>*, *Location_Center_X/Y*, *Number_Object_Number*, as IdentifyPrimaryObjects.
-  *Threshold_FinalThreshold_<objects>* and *Threshold_OrigThreshold_<objects>*: the threshold used (the mean
   local threshold for Adaptive).
-  *Threshold_WeightedVariance_<objects>*, *Threshold_SumOfEntropies_<objects>*: how well the threshold separates
   the probability image, as IdentifyPrimaryObjects measures its intensity image.
"""

import numpy

from cellprofiler_core.constants.measurement import (
    COLTYPE_FLOAT,
    FF_COUNT,
    IMAGE,
    M_LOCATION_CENTER_X,
    M_LOCATION_CENTER_Y,
    M_LOCATION_CENTER_Z,
    M_NUMBER_OBJECT_NUMBER,
)
from cellprofiler_core.image import Image
from cellprofiler_core.module.image_segmentation import ImageSegmentation
from cellprofiler_core.object import Objects
from cellprofiler_core.setting import Binary, ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.range import IntegerRange
from cellprofiler_core.setting.text import Float, ImageName, Integer, OddInteger

from _model_settings import DEVICES
from _run_errors import names_image_set

THRESHOLD_METHODS = {
    "Model default": "model default",
    "Simple (0.5)": "simple",
    "Manual": "manual",
    "Otsu": "otsu",
    "Adaptive Gaussian": "adaptive",
}
DIAMETER_AUTOMATIC = "Automatic"
DIAMETER_MANUAL = "Manual"
C_THRESHOLD = "Threshold"
# The threshold features IdentifyPrimaryObjects writes, so a swapped pipeline exports the same columns.
THRESHOLD_FEATURES = ("FinalThreshold", "OrigThreshold", "WeightedVariance", "SumOfEntropies")
MODEL_THRESHOLD_FEATURE = "DeepSegment_ModelThreshold_%s"


class DeepThreshold(ImageSegmentation):
    module_name = "DeepThreshold"
    category = "Image Segmentation"
    variable_revision_number = 2

    def create_settings(self):
        super().create_settings()
        self.x_name.text = "Select the probability image"
        self.x_name.doc = "The probability image made by DeepSegment (values 0 to 1)."
        self.y_name.value = "DeepNuclei"
        self.y_name.doc = "Name of the objects; downstream modules refer to them by this name."
        self.threshold_method = Choice(
            "Threshold method",
            list(THRESHOLD_METHODS),
            doc="How probabilities become foreground. See the module help for each method.",
        )
        self.manual_threshold = Float(
            "Manual threshold", 0.5, minval=0.0, maxval=1.0, doc="Probability above which a pixel is foreground."
        )
        self.block_size = OddInteger(
            "Adaptive block size (pixels)",
            51,
            minval=3,
            doc="Side of the square neighbourhood of the adaptive threshold; a few cell diameters works well.",
        )
        self.offset = Float(
            "Adaptive offset",
            0.0,
            minval=-1.0,
            maxval=1.0,
            doc="Subtracted from the local mean probability; raise it to be stricter.",
        )
        self.diameter_mode = Choice(
            "Typical cell diameter",
            [DIAMETER_AUTOMATIC, DIAMETER_MANUAL],
            doc="""\
The watershed that splits touching cells and the smallest object kept are sized by the typical diameter.
*Automatic* estimates it from each image; *Manual* uses the value you give.""",
        )
        self.diameter = Integer("Cell diameter (pixels)", 20, minval=2, doc="Typical diameter of one cell.")
        self.split_touching = Binary(
            "Split touching cells?", True, doc="Separate touching cells with a watershed on the distance map."
        )
        self.fill_holes = Binary("Fill holes in objects?", True, doc="Fill holes inside each object.")
        self.exclude_size = Binary(
            "Discard objects outside the diameter range?",
            False,
            doc="Discard objects whose equivalent diameter is outside the range below, as IdentifyPrimaryObjects.",
        )
        self.size_range = IntegerRange(
            "Diameter range of objects, in pixel units (Min,Max)",
            (10, 40),
            minval=1,
            doc="Objects with an equivalent diameter outside this range are discarded when asked above.",
        )
        self.exclude_border = Binary(
            "Discard objects touching the border of the image?",
            False,
            doc="Border objects are kept unless you ask for them to be discarded.",
        )
        self.wants_binary_image = Binary(
            "Save the foreground as a binary image?", False, doc="Also save the objects' pixels as a binary image."
        )
        self.binary_image_name = ImageName("Name the binary image", "DeepMask", doc="Name of the binary image.")
        self.device = Choice(
            "Device",
            DEVICES,
            doc="""\
Where the probability image becomes objects. *Auto* uses a CUDA GPU when PyTorch sees one and the CPU
otherwise; *GPU* fails with a clear error when no CUDA GPU is available; *CPU* never uses the GPU. On a
GPU the threshold, hole filling, distance transforms, connected components and sizes are computed in GPU
memory and only the cells to split come back to the CPU; the objects are the same as on the CPU. An image
whose post-processing does not fit in the GPU memory left (about 64 bytes per pixel, within
CELLCOUNT_GPU_MEMORY_FRACTION) is post-processed on the CPU. Pipelines saved before this setting existed
keep the CPU.""",
        )

    def settings(self):
        return [
            self.x_name, self.y_name, self.threshold_method, self.manual_threshold, self.block_size,
            self.offset, self.diameter_mode, self.diameter, self.split_touching, self.fill_holes,
            self.exclude_size, self.size_range, self.exclude_border, self.wants_binary_image,
            self.binary_image_name, self.device,
        ]

    def visible_settings(self):
        visible = [self.x_name, self.y_name, self.threshold_method]
        method = THRESHOLD_METHODS[self.threshold_method.value]
        if method == "manual":
            visible.append(self.manual_threshold)
        elif method == "adaptive":
            visible += [self.block_size, self.offset]
        visible.append(self.diameter_mode)
        if self.diameter_mode.value == DIAMETER_MANUAL:
            visible.append(self.diameter)
        visible += [self.split_touching, self.fill_holes, self.exclude_size]
        if self.exclude_size.value:
            visible.append(self.size_range)
        visible += [self.exclude_border, self.wants_binary_image]
        if self.wants_binary_image.value:
            visible.append(self.binary_image_name)
        return visible + [self.device]

    def upgrade_settings(self, setting_values, variable_revision_number, module_name):
        """Revision 1 pipelines (before the device setting) keep the CPU post-processing."""
        if variable_revision_number == 1:
            setting_values = setting_values + ["CPU"]
            variable_revision_number = 2
        return setting_values, variable_revision_number

    def validate_module(self, pipeline):
        low, high = self.size_range.value
        if self.exclude_size.value and low >= high:
            raise ValidationError(
                f"The diameter range ({low}, {high}) is empty: its minimum must be below its maximum.",
                self.size_range,
            )

    @names_image_set
    def run(self, workspace):
        from cellcount_core.objects.postprocess import remove_objects_outside_diameter
        from cellcount_core.objects.segmentation import labels_from_probability

        image = workspace.image_set.get_image(self.x_name.value, must_be_grayscale=True)
        result = labels_from_probability(
            image.pixel_data,
            threshold_method=THRESHOLD_METHODS[self.threshold_method.value],
            threshold_value=self.threshold_value(workspace),
            block_size=self.block_size.value,
            offset=self.offset.value,
            diameter=self.diameter.value if self.diameter_mode.value == DIAMETER_MANUAL else None,
            fill_holes=self.fill_holes.value,
            split_touching=self.split_touching.value,
            exclude_border=self.exclude_border.value,
            device=self.torch_device(),
        )
        labels = result.labels
        if self.exclude_size.value:
            labels = remove_objects_outside_diameter(labels, *self.size_range.value)

        objects = Objects()
        objects.segmented = labels
        objects.parent_image = image.parent_image
        workspace.object_set.add_objects(objects, self.y_name.value)
        self.add_measurements(workspace)
        self.add_threshold_measurements(workspace.measurements, image, labels, result.threshold)
        if self.wants_binary_image.value:
            binary = Image(labels > 0, parent_image=image, convert=False)
            workspace.image_set.add(self.binary_image_name.value, binary)
        if self.show_window:
            workspace.display_data.x_data = image.pixel_data
            workspace.display_data.y_data = labels
            workspace.display_data.dimensions = image.dimensions

    def add_measurements(self, workspace, object_name=None):
        """Count, centres and object numbers, as IdentifyPrimaryObjects, in bounded memory.

        CellProfiler's own version builds float64 coordinate images (16 bytes per pixel, 1.6 GB for a
        10000 x 10000 image); the centres here are summed a few rows at a time.
        """
        from cellcount_core.objects.large_images import label_centroids

        name = self.y_name.value if object_name is None else object_name
        centers = label_centroids(workspace.object_set.get_objects(name).segmented)
        measurements = workspace.measurements
        measurements.add_measurement(name, M_LOCATION_CENTER_X, centers[:, 1])
        measurements.add_measurement(name, M_LOCATION_CENTER_Y, centers[:, 0])
        measurements.add_measurement(name, M_LOCATION_CENTER_Z, numpy.zeros(len(centers)))
        measurements.add_measurement(name, M_NUMBER_OBJECT_NUMBER, numpy.arange(1, len(centers) + 1))
        measurements.add_image_measurement(FF_COUNT % name, len(centers))

    def torch_device(self):
        """The device of the post-processing; None (the CPU) without importing torch when the setting says CPU."""
        if self.device.value == "CPU":
            return None
        from cellcount_core.running.inference import resolve_device

        return resolve_device(self.device.value)

    def threshold_value(self, workspace):
        """The threshold value for the methods that take one; None for the others."""
        method = THRESHOLD_METHODS[self.threshold_method.value]
        if method == "manual":
            return self.manual_threshold.value
        if method != "model default":
            return None
        feature = MODEL_THRESHOLD_FEATURE % self.x_name.value
        if not workspace.measurements.has_feature(IMAGE, feature):
            raise ValueError(
                f"DeepThreshold's 'Model default' threshold needs the probability image "
                f"'{self.x_name.value}' to come from DeepSegment (measurement {feature} is missing). "
                "Choose another threshold method for probability images made elsewhere."
            )
        return float(numpy.atleast_1d(workspace.measurements.get_current_image_measurement(feature))[0])

    def add_threshold_measurements(self, measurements, image, foreground, threshold):
        """IdentifyPrimaryObjects' threshold features; `foreground` is non-zero on the objects (labels or mask).

        The statistics are centrosome's, computed a few rows at a time (bounded memory on large images).
        """
        from cellcount_core.objects.threshold_statistics import sum_of_entropies, weighted_variance

        mask = image.mask if image.has_mask else None
        values = {
            "FinalThreshold": threshold,
            "OrigThreshold": threshold,
            "WeightedVariance": weighted_variance(image.pixel_data, foreground, mask),
            "SumOfEntropies": sum_of_entropies(image.pixel_data, foreground, mask),
        }
        for feature, value in values.items():
            measurements.add_image_measurement(self.threshold_feature(feature), float(value))

    def threshold_feature(self, feature):
        return f"{C_THRESHOLD}_{feature}_{self.y_name.value}"

    def get_measurement_columns(self, pipeline, object_name=None):
        columns = super().get_measurement_columns(pipeline, object_name)
        return columns + [(IMAGE, self.threshold_feature(feature), COLTYPE_FLOAT) for feature in THRESHOLD_FEATURES]

    def get_categories(self, pipeline, object_name):
        categories = super().get_categories(pipeline, object_name)
        return categories + [C_THRESHOLD] if object_name == IMAGE else categories

    def get_measurements(self, pipeline, object_name, category):
        if object_name == IMAGE and category == C_THRESHOLD:
            return list(THRESHOLD_FEATURES)
        return super().get_measurements(pipeline, object_name, category)

    def get_measurement_objects(self, pipeline, object_name, category, measurement):
        if object_name == IMAGE and category == C_THRESHOLD and measurement in THRESHOLD_FEATURES:
            return [self.y_name.value]
        return []
