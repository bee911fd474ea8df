"""Run the tutorials that draw figures, at the settings their docstrings give, and keep
the figures for the reference site (tutorials/site/figures). Resumable: a figure that
exists is not drawn again (`--force` draws every one).

    python tutorials/site/figures.py
"""

import argparse
import pathlib
import subprocess
import sys
import time


HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIGURES = HERE / "figures"
GALLERY = ("van_der_pol", "cancer_treatment", "cart_pole", "hiv_treatment")

# figure -> the command that draws it (from the repository root)
RUNS = {
    "lqr.png": ["tutorials/plan_your_own_problem.py", "--plot", "{out}"],
    "learn.png": ["tutorials/learn_through_the_planner.py", "--plot", "{out}"],
    # The embedded digits (Fashion-MNIST needs Debian's package); 80 epochs of its 11
    # batches are about the steps of the docstring's 2 epochs of Fashion-MNIST.
    "demp_digits.png": [
        "tutorials/demp_fashion_mnist.py",
        *("--dataset", "digits", "--epochs", "80", "--plot", "{out}"),
    ],
    **{
        f"gallery/{name}.png": ["tutorials/gallery.py", "--only", name, "--out", "{dir}"]
        for name in GALLERY
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true")
    force = parser.parse_args().force
    for name, command in RUNS.items():
        out = FIGURES / name
        if out.exists() and not force:
            print(f"{name}: exists")
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        args = [a.format(out=out, dir=out.parent) for a in command]
        tic = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True)
        print(f"{name}: drawn in {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
