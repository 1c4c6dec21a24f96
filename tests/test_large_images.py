"""Large images in bounded memory: block-wise components and post-processing equal a whole-image run, cells on
block seams are counted once, tiles stream lazily, and the GPU settings parse (no GPU needed)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from cellcount_core.objects import large_images
from cellcount_core.objects.blockwise import iter_components
from cellcount_core.objects.components import ComponentPixels
from cellcount_core.objects.large_images import labels_in_blocks, otsu_in_chunks
from cellcount_core.objects.segmentation import labels_from_probability
from cellcount_core.images.synthetic import ideal_probability, synthetic_cells
from cellcount_core.running.tiling import iter_tile_outputs, plan_tiles


def same_objects(a, b):
    """True if two label images hold the same objects (the same pixel sets), whatever their ids."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


# -- blockwise: every component exactly once ------------------------------------------------------------------


def test_iter_components_hands_out_each_component_once_even_across_many_blocks():
    rng = np.random.default_rng(0)
    mask = ndi.binary_dilation(rng.random((300, 260)) > 0.995, iterations=3)
    mask[40, 5:250] = True  # a line across every block
    mask[5:290, 131] = True
    mask[150:153, 20:200] = True
    expected, n = ndi.label(mask)

    def analyse(window, wanted):
        pixels = ComponentPixels.of(ndi.label(mask[window])[0])
        return pixels, wanted(pixels)

    found, handed_out = np.zeros(mask.shape, int), 0
    for part in iter_components(mask.shape, analyse, lambda h, w: 1, block_side=40, halo=8):
        assert set(part.ids.tolist()) <= set(np.flatnonzero(part.extra).tolist()), "handed out but not wanted"
        for index in part.ids:
            pixels = part.components == index
            assert not found[part.window][pixels].any(), "a component was handed out twice"
            handed_out += 1
            found[part.window][pixels] = handed_out
    assert handed_out == n and same_objects(found, expected)


@pytest.mark.parametrize("workers", [1, 3])
def test_iter_components_gives_the_same_parts_with_any_number_of_threads(workers):
    mask = ndi.binary_dilation(np.random.default_rng(1).random((200, 230)) > 0.99, iterations=2)

    def analyse(window, wanted):
        return ndi.label(mask[window])[0], window

    parts = [(part.window, part.core, part.extra, part.ids.tolist())
             for part in iter_components(mask.shape, analyse, lambda h, w: 1, block_side=50, halo=6, workers=workers)]
    assert all(window == extra for window, _, extra, _ in parts)  # each window with its own analysis
    assert parts == [(part.window, part.core, part.extra, part.ids.tolist())
                     for part in iter_components(mask.shape, analyse, lambda h, w: 1, block_side=50, halo=6,
                                                 workers=1)]


def test_component_diameters_equal_scipys_measurements(crowded):
    from cellcount_core.objects.diameter import component_diameters

    _, probability = crowded
    filled = ndi.binary_fill_holes(probability > 0.5)
    components, n = ndi.label(filled)
    index = np.arange(1, n + 1)
    areas = ndi.sum_labels(probability, components, index)
    deepest = ndi.maximum(ndi.distance_transform_edt(filled), components, index)
    equivalent, inscribed = component_diameters(ComponentPixels.of(components.astype(np.int32)), probability)
    np.testing.assert_allclose(equivalent[1:], np.sqrt(4 * areas / np.pi), rtol=1e-5)
    np.testing.assert_allclose(inscribed[1:], np.maximum(2 * deepest - 1, 1), rtol=1e-5)


def test_iter_components_rejects_empty_blocks():
    with pytest.raises(ValueError, match="positive"):
        next(iter_components((10, 10), None, lambda h, w: 1, block_side=0))


# -- post-processing in blocks == whole image -----------------------------------------------------------------


@pytest.fixture(scope="module")
def crowded():
    """1000 x 1000 px, about 230 cells, many touching or in clusters."""
    cells = synthetic_cells((1000, 1000), n_cells=230, touching=0.3, clustering=0.4, seed=7)
    return cells, np.clip(ndi.gaussian_filter((cells.labels > 0).astype(np.float32), 1.0), 0.0, 1.0)


@pytest.mark.parametrize("options", [
    dict(threshold_method="simple"),
    dict(threshold_method="otsu", exclude_border=True),
    dict(threshold_method="manual", threshold_value=0.3, diameter=15.0, split_touching=False),
    dict(threshold_method="adaptive", block_size=51),
])
def test_blocks_give_the_whole_image_objects(crowded, options):
    _, probability = crowded
    whole = labels_from_probability(probability, **options)
    blocks = labels_in_blocks(probability, block_side=150, **options)
    assert blocks.labels.max() == whole.count > 100
    assert same_objects(blocks.labels, whole.labels)
    assert blocks.labels.dtype == np.int32 and np.array_equal(np.unique(blocks.labels), np.arange(whole.count + 1))
    assert np.array_equal(blocks.mask, whole.mask)
    assert blocks.diameter == pytest.approx(whole.diameter, rel=1e-6)  # OpenCV float32 distances in blocks
    assert blocks.threshold == pytest.approx(whole.threshold, abs=0.01)  # adaptive: averaged over blocks


def test_cells_on_block_seams_are_counted_once(monkeypatch):
    shape, side, diameter = (700, 760), 120, 18.0
    cores = []

    def recording(*args, **kwargs):
        for part in iter_components(*args, **kwargs):
            cores.append(part.core)
            yield part

    monkeypatch.setattr(large_images, "iter_components", recording)
    labels_in_blocks(np.zeros(shape, np.float32), threshold_method="simple", diameter=diameter, block_side=side)
    rows = sorted({c[0].start for c in cores if c is not None} - {0})
    cols = sorted({c[1].start for c in cores if c is not None} - {0})
    assert len(rows) >= 4 and len(cols) >= 4
    # a cell on every seam crossing, and one on each seam between crossings
    centers = [(r, c) for r in rows for c in cols]
    centers += [(r, (cols[0] + cols[1]) // 2) for r in rows] + [((rows[0] + rows[1]) // 2, c) for c in cols]
    cells = synthetic_cells(shape, diameter=(diameter, diameter), irregularity=0.2, centers=centers, seed=1)
    assert cells.count == len(centers)

    found = labels_in_blocks(ideal_probability(cells.labels), threshold_method="simple", diameter=diameter,
                             block_side=side).labels
    assert found.max() == cells.count
    # one to one: every true cell lies in exactly one found object and every found object in one cell
    overlap = np.unique(np.stack([cells.labels[found > 0], found[found > 0]]), axis=1)
    assert len(np.unique(overlap[0])) == len(np.unique(overlap[1])) == overlap.shape[1] == cells.count


@pytest.fixture
def small_blocks(monkeypatch):
    """Maps above 100 000 pixels are post-processed in blocks of 128 pixels."""
    monkeypatch.setattr(large_images, "LARGE_IMAGE_PIXELS", 100_000)
    monkeypatch.setattr(large_images, "BLOCK_SIDE", 128)


@pytest.fixture(scope="module")
def sparse():
    """600 x 500 px, 120 cells, and the probability map a perfect network would give."""
    cells = synthetic_cells((600, 500), n_cells=120, seed=2)
    return cells, ideal_probability(cells.labels)


def test_large_maps_are_post_processed_in_blocks_by_labels_from_probability(sparse, small_blocks, monkeypatch):
    cells, probability = sparse
    blocked = labels_from_probability(probability, threshold_method="simple")
    monkeypatch.setattr(large_images, "LARGE_IMAGE_PIXELS", probability.size)
    whole = labels_from_probability(probability, threshold_method="simple")
    assert blocked.count == whole.count == cells.count
    assert same_objects(blocked.labels, whole.labels)


def test_label_centroids_equal_scipy_center_of_mass(monkeypatch):
    monkeypatch.setattr(large_images, "_CHUNK_ROWS", 7)
    labels = synthetic_cells((90, 70), n_cells=12, seed=3).labels.astype(np.int16)
    labels[labels == 5] = 0  # a missing label is skipped, as CellProfiler's indices skip it
    present = np.unique(labels[labels > 0])
    expected = np.array(ndi.center_of_mass(np.ones_like(labels), labels, present))
    np.testing.assert_allclose(large_images.label_centroids(labels), expected, rtol=1e-12)
    assert large_images.label_centroids(np.zeros((4, 4), int)).shape == (0, 2)


@pytest.mark.cellprofiler
def test_deepthreshold_measures_like_cellprofiler(cellprofiler):
    """DeepThreshold's bounded-memory measurements equal those of CellProfiler's ImageSegmentation."""
    from cellprofiler_core.module.image_segmentation import ImageSegmentation
    from cellcount_cellprofiler.workspace import single_image_workspace
    from test_plugins import instantiate

    cells = synthetic_cells((300, 260), n_cells=40, seed=4)
    module = instantiate("DeepThreshold", x_name="Probability", y_name="Cells", threshold_method="Simple (0.5)")
    workspace = single_image_workspace(module, {"Probability": ideal_probability(cells.labels)})
    module.run(workspace)
    ours = {f: workspace.measurements.get_current_measurement("Cells", f) for f in
            ("Location_Center_X", "Location_Center_Y", "Location_Center_Z", "Number_Object_Number")}
    ImageSegmentation.add_measurements(module, workspace)
    for feature, values in ours.items():
        np.testing.assert_allclose(values, workspace.measurements.get_current_measurement("Cells", feature))
    count = workspace.measurements.get_current_image_measurement("Count_Cells")
    assert count == cells.count == len(ours["Location_Center_X"])


@pytest.mark.cellprofiler
def test_deepthreshold_counts_a_large_image_in_blocks(cellprofiler, sparse, small_blocks):
    from cellcount_cellprofiler.workspace import single_image_workspace
    from test_plugins import instantiate

    cells, probability = sparse
    module = instantiate("DeepThreshold", x_name="Probability", y_name="Cells", threshold_method="Simple (0.5)")
    workspace = single_image_workspace(module, {"Probability": probability})
    module.run(workspace)
    assert workspace.measurements.get_current_image_measurement("Count_Cells") == cells.count
    assert len(workspace.measurements.get_current_measurement("Cells", "Location_Center_X")) == cells.count


def test_otsu_in_chunks_equals_skimage(monkeypatch):
    monkeypatch.setattr(large_images, "_CHUNK_ROWS", 7)
    probability = np.random.default_rng(3).beta(0.5, 0.5, (100, 80)).astype(np.float32)
    assert otsu_in_chunks(probability) == pytest.approx(float(threshold_otsu(probability)), abs=0)
    assert otsu_in_chunks(np.full((5, 5), 0.25, np.float32)) == 0.25


@pytest.mark.parametrize("bad, message", [(np.full((5, 5), 2.0), "within 0..1"), (np.full((5, 5), np.nan), "finite"),
                                          (np.zeros(5), "2-D")])
def test_bad_probability_maps_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        labels_in_blocks(bad, threshold_method="simple")


# -- a large image end to end, memory measured -----------------------------------------------------------------

POST_PROCESS = textwrap.dedent("""
    import sys
    import numpy as np
    from cellcount_core.objects import large_images
    from cellcount_core.objects.segmentation import labels_from_probability

    large_images.BLOCK_SIDE = 1024  # the bound below is for blocks of this side (the work grows with their area)

    def kilobytes(field):
        return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))

    probability = np.load(sys.argv[1])
    before = kilobytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # restart the peak (VmHWM) from the current resident size
    count = labels_from_probability(probability, threshold_method="model default", threshold_value=0.5).count
    print(count, (kilobytes("VmHWM") - before) * 1024)
""")


@pytest.mark.slow
@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="measures memory through Linux's /proc")
def test_a_9_megapixel_map_is_counted_within_2_percent_in_bounded_memory(tmp_path):
    cells = synthetic_cells((3000, 3000), n_cells=2060, seed=0)
    np.save(tmp_path / "probability.npy", ideal_probability(cells.labels))
    out = subprocess.run([sys.executable, "-c", POST_PROCESS, str(tmp_path / "probability.npy")], check=True,
                         capture_output=True, text=True).stdout
    count, extra_bytes = (int(v) for v in out.split())
    assert cells.count > 2000 and abs(count - cells.count) <= 0.02 * cells.count
    # labels (4 B/px) and mask (1 B/px) plus one block's work; a whole-image run needs about 40 B/px more
    assert extra_bytes < 5 * cells.labels.size + 150 * 2**20


# -- tiles stream to a device lazily ---------------------------------------------------------------------------


def test_tile_results_are_read_after_the_next_batch_is_submitted():
    image = np.random.default_rng(4).random((1, 90, 70)).astype(np.float32)
    plan = plan_tiles(image.shape, tile_size=32, overlap=8)
    events = []

    class Lazy:
        def __init__(self, number, values):
            self.number, self.values = number, values

        def __array__(self, dtype=None, copy=None):
            events.append(("read", self.number))
            return self.values

    def submit(batch):
        events.append(("submit", len(events)))
        return Lazy(events[-1][1], batch[:, :1].copy())

    stitched = np.empty(plan.image_shape, np.float32)
    for dest, values in iter_tile_outputs(submit, image, plan, batch_size=2):
        stitched[dest] = values
    np.testing.assert_array_equal(stitched, image[0])
    submitted = [number for kind, number in events if kind == "submit"]
    for number in submitted[:-1]:  # each batch is read only once the next one is on its way
        assert events.index(("read", number)) > events.index(("submit", submitted[submitted.index(number) + 1]))


# -- GPU settings and batches (CUDA itself is not run here: no GPU) ----------------------------------------------


def test_gpu_memory_fraction_comes_from_the_environment(monkeypatch):
    torch = pytest.importorskip("torch")
    from cellcount_core.running import gpu

    assert gpu.memory_fraction({}) is None and gpu.memory_fraction({gpu.MEMORY_FRACTION_VARIABLE: " "}) is None
    assert gpu.memory_fraction({gpu.MEMORY_FRACTION_VARIABLE: "0.25"}) == 0.25
    for bad in ("0", "1.5", "half", "nan"):
        with pytest.raises(ValueError, match=gpu.MEMORY_FRACTION_VARIABLE):
            gpu.memory_fraction({gpu.MEMORY_FRACTION_VARIABLE: bad})

    calls = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda *args: calls.append(args))
    monkeypatch.setenv(gpu.MEMORY_FRACTION_VARIABLE, "0.5")
    gpu.prepare_device(torch.device("cpu"))
    assert calls == []
    gpu.prepare_device(torch.device("cuda", 0))
    assert calls == [(0.5, torch.device("cuda", 0))]


def test_cuda_batch_runner_logic_with_cpu_stand_ins(monkeypatch):
    """The runner's buffers and lazy results, with plain memory and a no-op event standing in for CUDA's."""
    torch = pytest.importorskip("torch")
    from cellcount_core.running import gpu

    class Event:
        def record(self):
            pass

        def synchronize(self):
            pass

    monkeypatch.setattr(gpu, "_pinned_empty", lambda shape: torch.empty(shape))
    monkeypatch.setattr(gpu.torch.cuda, "Event", Event)
    runner = gpu.CudaBatchRunner(lambda tensor: tensor[:, :1] * 2.0, torch.device("cpu"))
    image = np.random.default_rng(5).random((2, 100, 90)).astype(np.float32)
    plan = plan_tiles(image.shape, tile_size=32, overlap=8)
    stitched = np.empty(plan.image_shape, np.float32)
    for dest, values in iter_tile_outputs(runner, image, plan, batch_size=3):
        stitched[dest] = values
    np.testing.assert_array_equal(stitched, 2.0 * image[0])
