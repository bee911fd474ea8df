"""MkDocs hook: the figures of benchmarks/README.md (benchmarks/results/*.png) and of
the tutorials (tutorials/site/figures, drawn by figures.py) become files of the site, at
the paths the pages link them with."""

import pathlib

from mkdocs.structure.files import File


ROOT = pathlib.Path(__file__).resolve().parents[2]


def on_files(files, config):
    results = ROOT / "benchmarks" / "results"
    for png in sorted(results.glob("*.png")):
        files.append(
            File(
                f"results/{png.name}",
                src_dir=str(ROOT / "benchmarks"),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    figures = ROOT / "tutorials" / "site"
    for png in sorted((figures / "figures").rglob("*.png")):
        files.append(
            File(
                png.relative_to(figures).as_posix(),
                src_dir=str(figures),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
