"""cellcount swap on realistic pipelines built with CellProfiler's own API, one as CellProfiler 4.2.8 saves it.

The headless tests run each pipeline before and after the swap on the same synthetic images and compare the
exported column names.
"""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.cellprofiler

CELLCOUNT = str(Path(sys.executable).with_name("cellcount"))
BOOKKEEPING = ("ExecutionTime_", "ModuleError_")
# Images, Metadata, NamesAndTypes (DNA = files containing "_dna") and Groups exactly as CellProfiler 4.2.8 saves
# them (copied from its dump of nuclei_related_modules()). 4.2.8 saves every other module of these pipelines
# exactly as CellProfiler 5 does; only these four and the header's DateRevision differ.
CP428_INPUT_MODULES = r"""Images:[module_num:1|svn_version:'Unknown'|variable_revision_number:2|show_window:False|notes:['To begin creating your project, use the Images module to compile a list of files and/or folders that you want to analyze. You can also specify a set of rules to include only the desired files in your selected folders.']|batch_state:array([], dtype=uint8)|enabled:True|wants_pause:False]
    :
    Filter images?:Images only
    Select the rule criteria:and (extension does isimage) (directory doesnot containregexp "[\\\\/]\\.")

Metadata:[module_num:2|svn_version:'Unknown'|variable_revision_number:6|show_window:False|notes:['The Metadata module optionally allows you to extract information describing your images (i.e, metadata) which will be stored along with your measurements. This information can be contained in the file name and/or location, or in an external file.']|batch_state:array([], dtype=uint8)|enabled:True|wants_pause:False]
    Extract metadata?:No
    Metadata data type:Text
    Metadata types:{}
    Extraction method count:1
    Metadata extraction method:Extract from file/folder names
    Metadata source:File name
    Regular expression to extract from file name:^(?P<Plate>.*)_(?P<Well>[A-P][0-9]{2})_s(?P<Site>[0-9])_w(?P<ChannelNumber>[0-9])
    Regular expression to extract from folder name:(?P<Date>[0-9]{4}_[0-9]{2}_[0-9]{2})$
    Extract metadata from:All images
    Select the filtering criteria:and (file does contain "")
    Metadata file location:Elsewhere...|
    Match file and image metadata:[]
    Use case insensitive matching?:No
    Metadata file name:None
    Does cached metadata exist?:No

NamesAndTypes:[module_num:3|svn_version:'Unknown'|variable_revision_number:8|show_window:False|notes:['The NamesAndTypes module allows you to assign a meaningful name to each image by which other modules will refer to it.']|batch_state:array([], dtype=uint8)|enabled:True|wants_pause:False]
    Assign a name to:Images matching rules
    Select the image type:Grayscale image
    Name to assign these images:DNA
    Match metadata:[]
    Image set matching method:Order
    Set intensity range from:Image metadata
    Assignments count:1
    Single images count:0
    Maximum intensity:255.0
    Process as 3D?:No
    Relative pixel spacing in X:1.0
    Relative pixel spacing in Y:1.0
    Relative pixel spacing in Z:1.0
    Select the rule criteria:and (file does contain "_dna")
    Name to assign these images:DNA
    Name to assign these objects:Cell
    Select the image type:Grayscale image
    Set intensity range from:Image metadata
    Maximum intensity:255.0

Groups:[module_num:4|svn_version:'Unknown'|variable_revision_number:2|show_window:False|notes:['The Groups module optionally allows you to split your list of images into image subsets (groups) which will be processed independently of each other. Examples of groupings include screening batches, microtiter plates, time-lapse movies, etc.']|batch_state:array([], dtype=uint8)|enabled:True|wants_pause:False]
    Do you want to group your images?:No
    grouping metadata count:1
    Metadata category:None"""


# ---------------------------------------------------------------- pipelines, built with CellProfiler's API

def input_modules(channels):
    """Images, Metadata, NamesAndTypes naming each image by a marker in its file name, Groups."""
    from cellcount_cellprofiler.pipeline_builder import new_module

    names = new_module("NamesAndTypes", assignment_method="Images matching rules")
    for index, (image, marker) in enumerate(channels.items()):
        if index:
            names.add_assignment()
        names.assignments[index].rule_filter.value = f'and (file does contain "{marker}")'
        names.assignments[index].image_name.value = image
    return [new_module("Images"), new_module("Metadata"), names, new_module("Groups")]


def nuclei_cells_modules():
    """Nuclei -> cells -> cytoplasm, intensities and shapes, exported to spreadsheets."""
    from cellcount_cellprofiler.pipeline_builder import export_module, new_module

    primary = new_module("IdentifyPrimaryObjects", x_name="DNA", y_name="Nuclei", size_range=(8, 40))
    primary.notes = ["Hoechst-stained nuclei; diameters measured on the first plate."]
    return input_modules({"DNA": "_dna", "Actin": "_actin"}) + [
        primary,
        new_module("IdentifySecondaryObjects", x_name="Nuclei", y_name="Cells", image_name="Actin"),
        new_module("IdentifyTertiaryObjects", primary_objects_name="Nuclei", secondary_objects_name="Cells",
                   subregion_objects_name="Cytoplasm"),
        new_module("MeasureObjectIntensity", images_list="DNA, Actin", objects_list="Nuclei, Cells, Cytoplasm"),
        new_module("MeasureObjectSizeShape", objects_list="Nuclei, Cells", calculate_zernikes=False),
        export_module(),
    ]


def nuclei_related_modules():
    """Two object sets from one image, related and measured, exported to spreadsheets."""
    from cellcount_cellprofiler.pipeline_builder import export_module, new_module

    return input_modules({"DNA": "_dna"}) + [
        new_module("IdentifyPrimaryObjects", x_name="DNA", y_name="Nuclei", size_range=(6, 50),
                   exclude_size=False, exclude_border_objects=False),
        new_module("IdentifyPrimaryObjects", x_name="DNA", y_name="BrightNuclei", size_range=(10, 40),
                   fill_holes="Never", unclump_method="None", limit_choice="Erase", maximum_object_count=300),
        new_module("RelateObjects", x_name="Nuclei", y_name="BrightNuclei"),
        new_module("MeasureObjectIntensity", images_list="DNA", objects_list="Nuclei"),
        export_module(),
    ]


def nuclei_database_modules():
    """The related nuclei exported to an SQLite database instead.

    Not run headless here: ExportToDatabase needs the MySQLdb package (mysqlclient) even for SQLite, in
    CellProfiler 4.2.8 and 5 alike, and the test environment leaves it out.
    """
    from cellcount_cellprofiler.pipeline_builder import new_module

    return nuclei_related_modules()[:-1] + [
        new_module("ExportToDatabase", db_type="SQLite", separate_object_tables="One table per object type")]


def text_of(modules):
    from cellcount_cellprofiler.pipeline_builder import pipeline_text

    return pipeline_text(modules)


def saved_by_cellprofiler_428(modules):
    """The .cppipe text CellProfiler 4.2.8 saves for a pipeline with input_modules({"DNA": "_dna"})."""
    header, *blocks = text_of(modules).split("\n\n")
    assert [block.split(":", 1)[0] for block in blocks[:4]] == ["Images", "Metadata", "NamesAndTypes", "Groups"]
    header = header.replace("DateRevision:500", "DateRevision:428")
    return "\n\n".join([header, CP428_INPUT_MODULES] + blocks[4:])


def swapped(text, folder, **options):
    """Load a pipeline text, swap it; return (pipeline, SwapResult, path of the dumped .cppipe)."""
    from cellcount_cellprofiler.pipeline_loading import load_pipeline_strict
    from cellcount_cellprofiler.pipeline_swap import swap_pipeline

    original = Path(folder) / "original.cppipe"
    original.write_text(text)
    pipeline = load_pipeline_strict(original).pipeline
    result = swap_pipeline(pipeline, **options)
    path = Path(folder) / ("compare.cppipe" if options.get("compare") else "swapped.cppipe")
    with open(path, "w", encoding="utf-8") as handle:
        pipeline.dump(handle)
    return pipeline, result, path


def names_of(pipeline):
    return [module.module_name for module in pipeline.modules(False)]


# ---------------------------------------------------------------- the swapped pipeline, in CellProfiler

def test_swap_puts_deep_modules_in_place_of_identify_primary_objects(cellprofiler, tmp_path):
    pipeline, result, _ = swapped(text_of(nuclei_cells_modules()), tmp_path)
    assert names_of(pipeline) == ["Images", "Metadata", "NamesAndTypes", "Groups", "DeepSegment", "DeepThreshold",
                                  "IdentifySecondaryObjects", "IdentifyTertiaryObjects", "MeasureObjectIntensity",
                                  "MeasureObjectSizeShape", "ExportToSpreadsheet"]
    segment, threshold = pipeline.modules()[4:6]
    assert (segment.x_name.value, segment.y_name.value) == ("DNA", "NucleiProbability")
    assert (threshold.x_name.value, threshold.y_name.value) == ("NucleiProbability", "Nuclei")
    assert result.swapped == ["Nuclei"]
    assert pipeline.modules()[6].x_name.value == "Nuclei"  # IdentifySecondaryObjects still reads Nuclei


def test_swap_carries_size_border_hole_and_declumping_options(cellprofiler, tmp_path):
    pipeline, result, _ = swapped(text_of(nuclei_related_modules()), tmp_path)
    thresholds = [module for module in pipeline.modules() if module.module_name == "DeepThreshold"]
    options = [(t.y_name.value, t.size_range.value, t.exclude_size.value, t.exclude_border.value,
                t.fill_holes.value, t.split_touching.value) for t in thresholds]
    assert options == [("Nuclei", (6, 50), False, False, True, True),
                       ("BrightNuclei", (10, 40), True, True, False, False)]
    assert ("IdentifyPrimaryObjects 'BrightNuclei' erased all its objects in images with more than 300; "
            "DeepThreshold has no such limit.") in result.notes


def test_swap_keeps_notes_and_writes_consistent_numbering(cellprofiler, tmp_path):
    from cellcount_cellprofiler.pipeline_loading import load_pipeline_strict

    pipeline, _, path = swapped(text_of(nuclei_cells_modules()), tmp_path)
    notes = pipeline.modules()[4].notes
    assert notes[0] == "Hoechst-stained nuclei; diameters measured on the first plate."
    assert notes[-1].startswith("cellcount swap: IdentifyPrimaryObjects 'Nuclei' on image 'DNA' replaced by")
    assert pipeline.modules()[0].notes[0].startswith("To begin creating your project")
    text = path.read_text()
    assert "ModuleCount:11" in text
    reloaded = load_pipeline_strict(path).pipeline
    assert names_of(reloaded) == names_of(pipeline)
    assert [module.module_num for module in reloaded.modules()] == list(range(1, 12))
    assert reloaded.modules()[4].notes == notes


def test_swap_predicts_the_measurement_columns_that_change(cellprofiler, tmp_path):
    _, result, _ = swapped(text_of(nuclei_cells_modules()), tmp_path)
    assert result.removed_columns == []  # DeepThreshold writes every threshold measurement of a global threshold
    assert result.added_columns == [("Image", "DeepSegment_ModelThreshold_NucleiProbability"),
                                    ("Image", "DeepSegment_ScaleFactor_NucleiProbability")]


def test_compare_mode_keeps_the_classical_module_and_adds_deep_objects_and_count(cellprofiler, tmp_path):
    pipeline, result, _ = swapped(text_of(nuclei_cells_modules()), tmp_path, compare=True)
    assert names_of(pipeline)[4:8] == ["IdentifyPrimaryObjects", "DeepSegment", "DeepThreshold", "DeepCount"]
    assert pipeline.modules()[6].y_name.value == "DeepNuclei"
    assert pipeline.modules()[7].count_name.value == "Nuclei"
    assert result.removed_columns == []
    assert {("Image", "Count_DeepNuclei"), ("Image", "DeepCount_Nuclei"),
            ("DeepNuclei", "Location_Center_X")} <= set(result.added_columns)
    assert names_of(pipeline).count("ExportToSpreadsheet") == 1  # its export of everything already has them


def test_compare_mode_adds_a_spreadsheet_export_before_export_to_database(cellprofiler, tmp_path):
    from cellcount_cellprofiler.pipeline_swap import COMPARE_EXPORT_PREFIX

    pipeline, result, _ = swapped(text_of(nuclei_database_modules()), tmp_path, compare=True, prefix="DL")
    assert names_of(pipeline)[-2:] == ["ExportToSpreadsheet", "ExportToDatabase"]
    export = pipeline.modules()[-2]
    assert export.wants_prefix.value and export.prefix.value == COMPARE_EXPORT_PREFIX
    assert {"DLNuclei", "DLBrightNuclei"} <= {name for name, _ in result.added_columns}
    assert any("Added ExportToSpreadsheet" in note for note in result.notes)


def test_swapped_database_pipeline_stays_valid(cellprofiler, tmp_path):
    pipeline, result, _ = swapped(text_of(nuclei_database_modules()), tmp_path)
    assert result.swapped == ["Nuclei", "BrightNuclei"]
    for module in pipeline.modules():
        if module.module_name not in ("DeepSegment", "DeepCount"):  # these need the bundled model files
            module.test_valid(pipeline)
    assert names_of(pipeline)[-1] == "ExportToDatabase"


def test_pipeline_saved_by_cellprofiler_428_is_upgraded_then_swapped(cellprofiler, tmp_path):
    from cellcount_cellprofiler.pipeline_loading import load_pipeline

    text = saved_by_cellprofiler_428(nuclei_related_modules())
    assert "DateRevision:428" in text
    assert "NamesAndTypes:[module_num:3|svn_version:'Unknown'|variable_revision_number:8|" in text
    pipeline, result, path = swapped(text, tmp_path)
    assert result.swapped == ["Nuclei", "BrightNuclei"]
    names_and_types = pipeline.modules()[2]
    assert names_and_types.assignments[0].image_name.value == "DNA"
    written = path.read_text()
    assert "DateRevision:500" in written
    assert "NamesAndTypes:[module_num:3|svn_version:'Unknown'|variable_revision_number:9|" in written
    assert not load_pipeline(path).problems


def test_swap_points_deep_modules_at_a_custom_model_file(cellprofiler, tmp_path, tiny_segmenter):
    pipeline, _, _ = swapped(text_of(nuclei_cells_modules()), tmp_path, segmenter=str(tiny_segmenter))
    segment = pipeline.modules()[4]
    assert segment.model_source.value == "Custom model file"
    assert Path(segment.model_path()) == tiny_segmenter


def test_swap_names_a_missing_custom_model_file(cellprofiler, tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        swapped(text_of(nuclei_cells_modules()), tmp_path, segmenter=str(tmp_path / "absent.safetensors"))


def three_d_modules():
    modules = nuclei_cells_modules()
    modules[2].process_as_3d.value = True
    return modules


def dangling_reference_modules():
    """An adaptive IdentifyPrimaryObjects whose GuideThreshold (which DeepThreshold does not make) is used."""
    from cellcount_cellprofiler.pipeline_builder import new_module

    math = new_module("CalculateMath", output_feature_name="ThresholdRatio")
    for operand in math.operands:
        operand.operand_choice.value = "Image"
        operand.operand_measurement.value = "Threshold_GuideThreshold_Nuclei"
    modules = nuclei_cells_modules()
    [primary] = [module for module in modules if module.module_name == "IdentifyPrimaryObjects"]
    primary.threshold.threshold_scope.value = "Adaptive"
    return modules[:-1] + [math, modules[-1]]


def deep_name_taken_modules():
    modules = nuclei_cells_modules()
    modules[6].subregion_objects_name.value = "DeepNuclei"  # the tertiary objects take the name --compare wants
    return modules


@pytest.mark.parametrize("build, options, message", [
    (lambda: nuclei_cells_modules()[:4], {}, "no IdentifyPrimaryObjects"),
    (three_d_modules, {}, "3-D"),
    (dangling_reference_modules, {}, 'CalculateMath setting .* uses Threshold_GuideThreshold_Nuclei'),
    (deep_name_taken_modules, {"compare": True}, "DeepNuclei, but the pipeline already makes"),
], ids=["nothing to swap", "3-D pipeline", "measurement still used", "compare name taken"])
def test_swap_refuses_what_it_cannot_swap(cellprofiler, tmp_path, build, options, message):
    from cellcount_cellprofiler.pipeline_swap import SwapRefused

    with pytest.raises(SwapRefused, match=message):
        swapped(text_of(build()), tmp_path, **options)


# ---------------------------------------------------------------- the command

def run_cellcount(*arguments):
    return subprocess.run([CELLCOUNT, *map(str, arguments)], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_swap_command_writes_the_pipeline_and_says_what_changed(cellprofiler, tmp_path):
    source = tmp_path / "saved_by_428.cppipe"
    source.write_text(saved_by_cellprofiler_428(nuclei_related_modules()))
    completed = run_cellcount("swap", source, tmp_path / "out.cppipe")
    assert completed.returncode == 0, completed.stderr
    said = completed.stdout
    assert "IdentifyPrimaryObjects 'BrightNuclei' on image 'DNA' replaced by" in said
    assert "Measurements no longer made" not in said  # DeepThreshold writes IdentifyPrimaryObjects' columns
    assert "saved by CellProfiler 4.2" in said
    assert (tmp_path / "out.cppipe").read_text().count("DeepThreshold:[") == 2


@pytest.mark.slow
def test_swap_command_refuses_a_pipeline_whose_modules_do_not_all_load(cellprofiler, tmp_path):
    text = text_of(nuclei_cells_modules()).replace("IdentifyTertiaryObjects:[", "IdentifyQuaternaryObjects:[")
    source = tmp_path / "broken.cppipe"
    source.write_text(text)
    completed = run_cellcount("swap", source, tmp_path / "out.cppipe")
    assert completed.returncode == 2
    assert "module 7 IdentifyQuaternaryObjects: did not load" in completed.stderr
    assert not (tmp_path / "out.cppipe").exists()


# ---------------------------------------------------------------- headless runs before and after

@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Two sites of a nuclear stain (``*_dna.png``) and a cell-body stain (``*_actin.png``), 16-bit PNG."""
    import imageio.v3 as iio
    from scipy import ndimage

    from cellcount_core.images.synthetic import synthetic_cells

    folder = tmp_path_factory.mktemp("images")
    for site, n_cells in ((1, 20), (2, 35)):
        cells = synthetic_cells((256, 256), n_cells, (12, 18), seed=site, dtype="uint16")
        bodies = ndimage.binary_dilation(cells.labels > 0, iterations=6)
        noise = np.random.default_rng(site).normal(0, 0.01, bodies.shape)
        actin = np.clip(ndimage.gaussian_filter(bodies * 0.4, 2) + 0.05 + noise, 0, 1)
        iio.imwrite(folder / f"site{site}_dna.png", cells.image)
        iio.imwrite(folder / f"site{site}_actin.png", (actin * 65535).astype(np.uint16))
    return folder


def run_headless(pipeline, images, output):
    """Run a pipeline with headless CellProfiler; fail on an error or a module that did not load."""
    from cellcount_cellprofiler.plugin_folder import plugins_dir

    output.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [sys.executable, "-m", "cellprofiler", "-c", "-r", "-p", str(pipeline), "-i", str(images), "-o", str(output),
         "--plugins-directory", str(plugins_dir())], capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Could not load" not in completed.stderr, completed.stderr[-3000:]
    return output


def spreadsheet_columns(folder):
    """{table: column names} of every CSV ExportToSpreadsheet wrote, without the per-module bookkeeping."""
    tables = {}
    for path in sorted(folder.glob("*.csv")):
        if path.name != "Experiment.csv":
            with open(path, newline="") as handle:
                header = next(csv.reader(handle))
            tables[path.stem] = {column for column in header if not column.startswith(BOOKKEEPING)}
    return tables


@pytest.mark.slow
def test_swapped_nuclei_cells_pipeline_exports_the_same_columns(cellprofiler, tmp_path, image_folder):
    from cellcount_cellprofiler.pipeline_check import check_pipeline
    from cellcount_cellprofiler.plugin_folder import plugins_dir

    original = tmp_path / "original.cppipe"
    original.write_text(text_of(nuclei_cells_modules()))
    _, result, swapped_path = swapped(original.read_text(), tmp_path)
    before = spreadsheet_columns(run_headless(original, image_folder, tmp_path / "before"))
    after = spreadsheet_columns(run_headless(swapped_path, image_folder, tmp_path / "after"))
    assert set(before) == set(after) == {"Image", "Nuclei", "Cells", "Cytoplasm"}
    for objects in ("Nuclei", "Cells", "Cytoplasm"):
        assert after[objects] == before[objects], objects
    assert before["Image"] - after["Image"] == {feature for _, feature in result.removed_columns}
    assert after["Image"] - before["Image"] == {feature for _, feature in result.added_columns}
    assert {"Count_Nuclei", "Count_Cells", "Count_Cytoplasm", "FileName_DNA"} <= after["Image"]
    assert check_pipeline(swapped_path, plugins_dir()).ok  # the bundled models load too


@pytest.mark.slow
def test_swapped_pipeline_saved_by_428_exports_the_same_columns(cellprofiler, tmp_path, image_folder):
    original = tmp_path / "original.cppipe"
    original.write_text(saved_by_cellprofiler_428(nuclei_related_modules()))
    _, result, swapped_path = swapped(original.read_text(), tmp_path)
    before = spreadsheet_columns(run_headless(original, image_folder, tmp_path / "before"))
    after = spreadsheet_columns(run_headless(swapped_path, image_folder, tmp_path / "after"))
    assert set(before) == set(after) == {"Image", "Nuclei", "BrightNuclei"}
    for objects in ("Nuclei", "BrightNuclei"):
        assert after[objects] == before[objects], objects
    assert {"Children_BrightNuclei_Count", "Intensity_MeanIntensity_DNA"} <= after["Nuclei"]
    assert before["Image"] - after["Image"] == {feature for _, feature in result.removed_columns}
    assert after["Image"] - before["Image"] == {feature for _, feature in result.added_columns}
