"""Settings shared by the deep modules: which model file, on which device, in tiles of what size.

CellProfiler loads only ``[!_]*.py`` files of a plugin folder as modules, so this helper is imported by the
plugin files but never registered itself. It uses only the settings API that CellProfiler 4.2.8 also has.
"""

import os

from cellprofiler_core.preferences import ABSOLUTE_FOLDER_NAME
from cellprofiler_core.preferences import DEFAULT_INPUT_FOLDER_NAME
from cellprofiler_core.preferences import DEFAULT_INPUT_SUBFOLDER_NAME
from cellprofiler_core.preferences import DEFAULT_OUTPUT_FOLDER_NAME
from cellprofiler_core.preferences import DEFAULT_OUTPUT_SUBFOLDER_NAME
from cellprofiler_core.setting import ValidationError
from cellprofiler_core.setting.choice import Choice
from cellprofiler_core.setting.text import Directory, Filename, Float, Integer

from cellcount_core.models.bundled import bundled_models, resolve_model
from cellcount_core.models.model_files import ModelFileError, read_card
from cellcount_core.running.tiling import AUTOMATIC_TILING, MIN_TILE_SIZE

BUNDLED = "Bundled model"
CUSTOM = "Custom model file"
DEVICES = ["Auto", "CPU", "GPU"]
CELL_SIZE_AUTOMATIC = "Automatic"
CELL_SIZE_MANUAL = "Manual"
CELL_SIZE_OFF = "Off"
TILING_AUTOMATIC = "Automatic"
TILING_MANUAL = "Manual"
MODEL_FILE_TYPES = [("Model weights (*.safetensors)", "*.safetensors"), ("Model card (*.json)", "*.json")]


def bundled_names(kind):
    """Names of the bundled models of one kind ("segmenter" or "counter"), for a Choice setting."""
    names = []
    for name, path in sorted(bundled_models().items()):
        try:
            if read_card(path).kind == kind:
                names.append(name)
        except ModelFileError:
            continue  # a broken bundled file is reported by validation when it is chosen, not listed
    return names


class ModelSettings:
    """Mixin for the model choice (bundled or a custom file), the device, the tiling and the cell size.

    A subclass sets ``model_kind`` and ``default_model`` and calls :meth:`create_model_settings`; a subclass with
    a *Tiles per batch* setting names it ``batch_size``.
    """

    model_kind = "segmenter"
    default_model = "default"
    #: What the cell size setting does besides, for this module (appended to its help).
    cell_size_note = ""

    def create_model_settings(self):
        choices = bundled_names(self.model_kind) or [self.default_model]
        self.model_source = Choice(
            "Model source",
            [BUNDLED, CUSTOM],
            doc=f"""\
Use a model that ships with cellcount (*{BUNDLED}*), or a model file you trained yourself with
``cellcount-train`` (*{CUSTOM}*): a ``.safetensors`` weights file with its ``.json`` card beside it.""",
        )
        self.bundled_model = Choice(
            "Bundled model",
            choices,
            value=self.default_model if self.default_model in choices else choices[0],
            doc="The bundled model to run. Its card (the .json file) records its training data and accuracy.",
        )
        self.model_directory = Directory(
            "Folder holding the model file",
            dir_choices=[
                ABSOLUTE_FOLDER_NAME,
                DEFAULT_INPUT_FOLDER_NAME,
                DEFAULT_OUTPUT_FOLDER_NAME,
                DEFAULT_INPUT_SUBFOLDER_NAME,
                DEFAULT_OUTPUT_SUBFOLDER_NAME,
            ],
            doc="""\
The folder of the custom model file. On a cluster, CreateBatchFiles rewrites this folder with its path
mappings like any other folder setting.""",
        )
        self.model_file = Filename(
            "Model file",
            "model.safetensors",
            get_directory_fn=self.model_directory.get_absolute_path,
            set_directory_fn=self._set_model_directory,
            browse_msg="Choose a cellcount model file",
            exts=MODEL_FILE_TYPES,
            doc="The custom model's weights file (``.safetensors``); its ``.json`` card must lie beside it.",
        )
        self.device = Choice(
            "Device",
            DEVICES,
            doc="""\
*Auto* uses a CUDA GPU when PyTorch sees one and the CPU otherwise. *GPU* fails with a clear error
when no CUDA GPU is available; *CPU* never uses the GPU.""",
        )
        cpu_tile, cpu_batch = AUTOMATIC_TILING["cpu"]
        gpu_tile, gpu_batch = AUTOMATIC_TILING["cuda"]
        self.tiling_mode = Choice(
            "Tile size and tiles per batch",
            [TILING_AUTOMATIC, TILING_MANUAL],
            doc=f"""\
Images run through the network in overlapping square tiles, stitched seamlessly: the output does
not depend on the tile size (from 512 pixels for the bundled segmenter, whose receptive field is 126
pixels in radius, and 384 for the bundled counter). *{TILING_AUTOMATIC}* (the default) takes the tile size and the number of
tiles per batch measured fastest on the device the module runs on: on a CPU one {cpu_tile}-pixel tile
at a time ({cpu_batch} per batch; 2.6 times faster than 512-pixel tiles in batches of 4, which compute
the tiles' overlaps again, but with twice the memory: 1.4 GB instead of 0.7 GB for a 2000 x 2000
image), on a CUDA GPU {gpu_tile}-pixel tiles in batches of {gpu_batch}. *{TILING_MANUAL}* uses the tile size
you give: choose smaller tiles when memory is short.""",
        )
        self.tile_size = Integer(
            "Tile size (pixels)",
            512,
            minval=MIN_TILE_SIZE,
            doc="""\
The side of the square tiles, for the manual tiling. Smaller tiles use less memory; larger tiles
compute fewer overlaps and run faster.""",
        )

        self.cell_size_mode = Choice(
            "Bring the cells to the model's size",
            [CELL_SIZE_AUTOMATIC, CELL_SIZE_MANUAL, CELL_SIZE_OFF],
            doc=f"""\
A network recognises cells well only at sizes close to those it was trained on (its card's diameter
band); much larger cells come out as rings and fragments and are over-counted. *{CELL_SIZE_AUTOMATIC}*
estimates the cell diameter of each image with quick passes of the segmentation network on reduced
copies, and resizes the image into the model's band before the network when needed (the output keeps
the image's size). Under *{CELL_SIZE_AUTOMATIC}*, where the network finds only specks narrower than half
the band's smallest diameter, those that are single bright pixels of a dark field (sparse photon noise:
they vanish under a 3 x 3 median) are erased; a field where nothing survives that median (nor anything as
wide as the band's smallest cells is found) counts 0. Where the reduced copies see fewer than 8 cells, the
image enlarged x2 tells a few large cells (their full-size fragments multiply) from crowded small ones (they
stay as many): give a diameter for tiny cells, or if that check is wrong on your images.{self.cell_size_note}
*{CELL_SIZE_MANUAL}* resizes from the typical cell diameter you give.
*{CELL_SIZE_OFF}* runs the network on the image as it is.""",
        )
        self.cell_diameter = Float(
            "Typical cell diameter (pixels)",
            20.0,
            minval=1.0,
            doc="The typical diameter of the cells in this image, in pixels, for the manual cell size.",
        )

    def _set_model_directory(self, path):
        dir_choice, custom_path = self.model_directory.get_parts_from_path(path)
        self.model_directory.join_parts(dir_choice, custom_path)

    def model_settings(self):
        return [self.model_source, self.bundled_model, self.model_directory, self.model_file, self.device,
                self.tile_size]

    def cell_size_settings(self):
        """Appended to a module's settings after its own (added in its revision 2)."""
        return [self.cell_size_mode, self.cell_diameter]

    def tiling_settings(self):
        """Appended last to a module's settings (added in its revision 3)."""
        return [self.tiling_mode]

    def visible_tiling_settings(self):
        """The tiling choice, and under *Manual* the tile size and (where the module has it) the batch size."""
        if self.tiling_mode.value != TILING_MANUAL:
            return [self.tiling_mode]
        return [self.tiling_mode, self.tile_size] + ([self.batch_size] if hasattr(self, "batch_size") else [])

    def tiling(self):
        """The ``tile_size`` and ``batch_size`` arguments of cellcount_core.running.inference, as a dict."""
        if self.tiling_mode.value != TILING_MANUAL:
            return {"tile_size": "auto", "batch_size": None}
        batch_size = self.batch_size.value if hasattr(self, "batch_size") else None
        return {"tile_size": self.tile_size.value, "batch_size": batch_size}

    def visible_cell_size_settings(self):
        manual = self.cell_size_mode.value == CELL_SIZE_MANUAL
        return [self.cell_size_mode] + ([self.cell_diameter] if manual else [])

    def cell_size(self):
        """The ``cell_size`` argument of cellcount_core.running.inference: "auto", "off" or the manual diameter."""
        if self.cell_size_mode.value == CELL_SIZE_MANUAL:
            return self.cell_diameter.value
        return "auto" if self.cell_size_mode.value == CELL_SIZE_AUTOMATIC else "off"

    def upgrade_settings(self, setting_values, variable_revision_number, module_name):
        """Revision 1 pipelines get the cell-size settings, automatic; revision 2 pipelines keep the tile size
        they were saved with (manual tiling)."""
        if variable_revision_number == 1:
            setting_values = setting_values + [CELL_SIZE_AUTOMATIC, "20.0"]
            variable_revision_number = 2
        if variable_revision_number == 2:
            setting_values = setting_values + [TILING_MANUAL]
            variable_revision_number = 3
        return setting_values, variable_revision_number

    def visible_model_settings(self):
        if self.model_source.value == BUNDLED:
            chosen = [self.model_source, self.bundled_model]
        else:
            chosen = [self.model_source, self.model_directory, self.model_file]
        return chosen + [self.device] + self.visible_tiling_settings()

    def model_path(self):
        """The model file this module runs: a bundled model's path or the custom file's absolute path."""
        if self.model_source.value == BUNDLED:
            return str(resolve_model(self.bundled_model.value))
        return os.path.join(self.model_directory.get_absolute_path(), self.model_file.value)

    def model_card(self):
        """The chosen model's card; a ValidationError on the offending setting if it is missing or unfit."""
        setting = self.bundled_model if self.model_source.value == BUNDLED else self.model_file
        try:
            card = read_card(self.model_path())
        except ModelFileError as error:
            raise ValidationError(str(error), setting)
        if card.kind != self.model_kind:
            raise ValidationError(
                f"{self.model_path()} is a {card.kind} model, but {self.module_name} needs a "
                f"{self.model_kind} model. Choose a {self.model_kind} model file.",
                setting,
            )
        return card

    def validate_module(self, pipeline):
        self.model_card()

    def prepare_to_create_batch(self, workspace, fn_alter_path):
        self.model_directory.alter_for_create_batch_files(fn_alter_path)
        return True
