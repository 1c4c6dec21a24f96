"""``make demo``: count cells in a headless CellProfiler run, classical and deep side by side.

Writes a few synthetic fluorescence images with known counts (or takes a folder you name), runs
``python -m cellprofiler -c -r -p pipelines/compare_counts.cppipe`` on them, and prints one row per image:
true count (empty for your own images), IdentifyPrimaryObjects' count, DeepSegment + DeepThreshold's count,
and DeepCount's regression count.
"""

import argparse
import csv
import subprocess
import sys
from pathlib import Path

from cellcount_cellprofiler.plugin_folder import plugins_dir

DEFAULT_PIPELINE = Path("pipelines") / "compare_counts.cppipe"
TABLE_COLUMNS = ("image", "true_count", "classical_count", "deep_count", "regression_count")
# The demo's images: (number of cells, smallest and largest diameter) each, sparse to crowded.
DEMO_IMAGES = ((25, (14, 20)), (60, (12, 18)), (90, (16, 24)), (120, (12, 18)), (150, (10, 16)), (200, (10, 14)))


def write_synthetic_images(folder, seed=0):
    """Write the demo's synthetic images as 16-bit PNG files; return {file name: true count}."""
    import imageio.v3 as iio

    from cellcount_core.images.synthetic import synthetic_cells

    folder.mkdir(parents=True, exist_ok=True)
    true_counts = {}
    for index, (n_cells, diameter) in enumerate(DEMO_IMAGES):
        cells = synthetic_cells((512, 512), n_cells, diameter, seed=seed + index, dtype="uint16")
        name = f"synthetic_{index + 1:02d}_{cells.count}cells.png"
        iio.imwrite(folder / name, cells.image)
        true_counts[name] = cells.count
    return true_counts


def run_cellprofiler(pipeline, images, output):
    """Run the pipeline headless on a folder of images; raise if CellProfiler fails or exports nothing."""
    output.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "cellprofiler", "-c", "-r", "-p", str(pipeline), "-i", str(images), "-o", str(output),
        "--plugins-directory", str(plugins_dir()), "-L", "WARNING",
    ]
    print("$", " ".join(command), flush=True)
    completed = subprocess.run(command)
    image_table = output / "Image.csv"
    if completed.returncode != 0:
        raise SystemExit(f"CellProfiler exited with status {completed.returncode}; see its messages above.")
    if not image_table.exists():
        raise SystemExit(
            f"CellProfiler wrote no {image_table}: a module probably failed to load and the rest of the "
            "pipeline was dropped. Look for 'Could not load' in the messages above."
        )
    return image_table


def comparison_rows(image_table, true_counts):
    """One row per image of CellProfiler's Image.csv, with the true count where it is known."""
    with open(image_table, newline="") as handle:
        for row in csv.DictReader(handle):
            name = row["FileName_DNA"]
            yield {
                "image": name,
                "true_count": true_counts.get(name, ""),
                "classical_count": int(float(row["Count_Nuclei"])),
                "deep_count": int(float(row["Count_DeepNuclei"])),
                "regression_count": f"{float(row['DeepCount_Nuclei']):.1f}",
            }


def print_table(rows):
    widths = [max(len(column), *(len(str(row[column])) for row in rows)) for column in TABLE_COLUMNS]
    print("  ".join(column.ljust(width) for column, width in zip(TABLE_COLUMNS, widths)))
    for row in rows:
        print("  ".join(str(row[column]).ljust(width) for column, width in zip(TABLE_COLUMNS, widths)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("demo_output"), help="folder for images and tables")
    parser.add_argument("--images", type=Path, help="a folder of your own images (default: synthetic ones)")
    parser.add_argument("--pipeline", type=Path, default=DEFAULT_PIPELINE)
    args = parser.parse_args(argv)
    if args.images:
        if not args.images.is_dir():
            raise SystemExit(f"--images {args.images} is not a folder. Name a folder of images.")
        images, true_counts = args.images, {}
    else:
        images = args.output / "images"
        true_counts = write_synthetic_images(images)
    image_table = run_cellprofiler(args.pipeline, images, args.output / "cellprofiler")
    rows = list(comparison_rows(image_table, true_counts))
    print_table(rows)
    with open(args.output / "counts.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=TABLE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nTables: {args.output / 'counts.csv'} and CellProfiler's exports in {args.output / 'cellprofiler'}")


if __name__ == "__main__":
    main()
